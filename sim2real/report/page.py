"""The reviewer's report: one self-contained HTML page (stage ``report``).

Tables, plots and the image grid of every variant; the page skeleton and its CSS are the files in
``templates/`` (``string.Template``). Plots are matplotlib PNGs, photos JPEG thumbnails, all
embedded as base64 ``data:`` URIs, so the page opens offline from anywhere. The study's headline
(sentences, gap-closure bars, recall by distance) comes from :mod:`sim2real.report.study`.
"""
from __future__ import annotations

import base64
import functools
import html
import io
import json
import string
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import pandas as pd
import yaml

from sim2real.errors import DataError
from sim2real.formats.images import read_rgb
from sim2real.manifest import read_manifest, resolve_manifest_path
from sim2real.metrics.plots import draw_blur_profile
from sim2real.metrics.study import ci_key
from sim2real.report import calibration as calib
from sim2real.report import study as headline

TEMPLATES = Path(__file__).with_name("templates")


@functools.lru_cache(maxsize=None)
def _template(name: str) -> string.Template:
    return string.Template((TEMPLATES / name).read_text())


# (column title, getter over (metrics, gap), format, direction: +1 higher is better, -1 lower is better, key)
COLUMNS = [
    ("AP Car Easy [%]", lambda m, g: m["kitti"]["Car"]["easy"], "{:.1f}", +1, "ap_car_easy"),
    ("AP Car Mod. [%]", lambda m, g: m["kitti"]["Car"]["moderate"], "{:.1f}", +1, "ap_car_moderate"),
    ("AP Car Hard [%]", lambda m, g: m["kitti"]["Car"]["hard"], "{:.1f}", +1, "ap_car_hard"),
    ("mAP50", lambda m, g: m["mAP50"]["all"], "{:.3f}", +1, "map50"),
    ("KID", lambda m, g: g["kid"], "{:.4f}", -1, "kid"),
    ("PAD", lambda m, g: g["pad"], "{:.2f}", -1, "pad"),
    ("blur-profile dist.", lambda m, g: g["blur_profile_distance"], "{:.3f}", -1, "blur_profile_distance"),
    ("colour W1 (Lab)", lambda m, g: g["colour_w1_lab"], "{:.2f}", -1, "colour_w1_lab"),
    ("spectrum slope Δ", lambda m, g: g["spectrum_slope_abs_diff"], "{:.2f}", -1, "spectrum_slope_abs_diff"),
]


# ----------------------------------------------------------------------------- inputs
def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "report input not found (run the stage that writes it: dvc repro)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not valid JSON ({exc.msg})", line=exc.lineno) from None


def read_report_csv(path: str | Path, *, roots: Sequence[str | Path]) -> pd.DataFrame:
    """A report input CSV; its path columns (if any) must lie inside the data ``roots``."""
    return read_manifest(path, roots=roots, missing_hint="report input: run the stage that writes it, dvc repro")


def _interval_of(m: dict, key: str) -> list | None:
    """The bootstrap interval the score stage wrote beside a table value, if any."""
    k = ci_key(float(m.get("bootstrap", {}).get("level", 0.95)))
    where = {"ap_car_easy": ("kitti", "Car", f"easy_{k}"), "ap_car_moderate": ("kitti", "Car", f"moderate_{k}"),
             "ap_car_hard": ("kitti", "Car", f"hard_{k}"), "map50": (f"mAP50_{k}",)}.get(key)
    x = m
    for part in where or ():
        x = x.get(part) if isinstance(x, dict) else None
    return x if where and isinstance(x, list) and len(x) == 2 else None


def variant_rows(variants: dict, metrics_dir: Path, gap_dir: Path, *, roots: Sequence[str | Path]) -> list[dict]:
    """One row per variant: its table cells (value, text) and the raw inputs."""
    rows = []
    for name in variants:
        m_path, g_path = metrics_dir / f"{name}.json", gap_dir / f"{name}.json"
        m, g = read_json(m_path), read_json(g_path)
        cells = []
        for title, get, fmt, _, key in COLUMNS:
            try:
                v = get(m, g)
            except (KeyError, TypeError):
                src = m_path if title.startswith(("AP", "mAP")) else g_path
                raise DataError(src, f"missing value for report column '{title}'") from None
            v = None if v is None else float(v)
            text = "n/a" if v is None or not np.isfinite(v) else fmt.format(v)
            ci = _interval_of(m, key)
            if ci is not None and v is not None:
                text += f" [{fmt.format(ci[0])}, {fmt.format(ci[1])}]"
            cells.append((v, text))
        rows.append({"variant": name, "cells": cells, "gap": g, "metrics": m,
                     "profile": read_report_csv(gap_dir / name / "blur_profile.csv", roots=roots),
                     "spectrum": read_report_csv(gap_dir / name / "spectrum.csv", roots=roots)})
    return rows


# ----------------------------------------------------------------------------- images
def png_data_uri(fig) -> str:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def jpeg_data_uri(rgb: np.ndarray, quality: int = 85) -> str:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def thumbnail(rgb: np.ndarray, width_px: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (int(width_px), max(1, round(h * width_px / w))), interpolation=cv2.INTER_AREA)


def blur_figure(rows: list[dict]):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, r in enumerate(rows):
        draw_blur_profile(ax, r["profile"], f"{r['variant']} (d={r['gap']['blur_profile_distance']:.3f})",
                          real=(i == 0), color=colors[i % len(colors)])
    ax.legend(fontsize=8)
    ax.set_title("Blur vs distance: sharpness inside object boxes by box height")
    fig.tight_layout()
    return fig


def spectrum_figure(rows: list[dict]):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for i, r in enumerate(rows):
        s = r["spectrum"]
        ax.plot(s["frequency_cpp"], s["sim_log10_power"], "-", label=r["variant"])
        if i == 0:
            ax.plot(s["frequency_cpp"], s["real_log10_power"], "--", color="black", label="real KITTI val")
    ax.set_xscale("log")
    ax.set_xlabel("spatial frequency [cycles/px]")
    ax.set_ylabel("mean log10 power")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Radially averaged power spectrum")
    fig.tight_layout()
    return fig


def _frame_lookup(index: pd.Index) -> dict[str, str]:
    """frame id -> a variant's frame id, also for ids written ``<source>__<frame_id>`` (mixed datasets)."""
    out = {}
    for k in sorted(map(str, index), reverse=True):      # the first in sorted order wins
        out[k.rsplit("__", 1)[-1]] = k
    out.update({str(k): str(k) for k in index})
    return out


def image_grid(variants: dict, real_frames_csv: Path, n_frames: int, width_px: int, *,
               roots: Sequence[str | Path]) -> tuple[list[str], list[list], np.ndarray | None]:
    """Header and rows of the image grid: the same frame as clean sim (the baseline dataset), in
    every other variant, and a real val frame. Cells: (data URI or None, caption). Also the first
    row as one RGB strip (for the tracker), or None without frames. Manifest paths must lie inside ``roots``."""
    tables = {}
    for name, spec in variants.items():
        csv = Path(spec["data"]) / "frames.csv"
        df = read_report_csv(csv, roots=roots)
        if "frame_id" not in df.columns or "image" not in df.columns:
            raise DataError(csv, "missing column frame_id or image")
        images = df.set_index("frame_id")["image"]
        tables[name] = (images, csv.parent, _frame_lookup(images.index))
    names = list(variants)
    base = "baseline" if "baseline" in tables else names[0]
    others = [n for n in names if n != base]
    ids = sorted(tables[base][0].index)
    # frames present in the most variants first, then evenly spaced through the sequence
    cover = {f: sum(f in tables[n][2] for n in others) for f in ids}
    best = max(cover.values(), default=0)
    pool = [f for f in ids if cover[f] == best]
    picks = [pool[i] for i in np.unique(np.linspace(0, len(pool) - 1, max(1, n_frames)).round().astype(int))] if pool else []
    real = read_report_csv(real_frames_csv, roots=roots)
    real = real[real["split"] == "val"].sort_values("image_id")
    if real.empty:
        raise DataError(real_frames_csv, "no real val frames for the image grid")
    header = [f"clean sim ({base})"] + others + ["real KITTI (val)"]
    grid, strip = [], None
    for k, fid in enumerate(picks):
        row, thumbs = [], []
        for n in [base] + others:
            images, folder, lookup = tables[n]
            key = lookup.get(fid)
            if key is not None:
                thumbs.append(thumbnail(read_rgb(resolve_manifest_path(images[key], folder)), width_px))
                row.append((jpeg_data_uri(thumbs[-1]), f"{n}: {key}"))
            else:
                row.append((None, f"{n}: frame not in this variant"))
        r = real.iloc[(k * max(1, len(real) // max(1, len(picks)))) % len(real)]
        thumbs.append(thumbnail(read_rgb(resolve_manifest_path(r["image"], real_frames_csv.parent)), width_px))
        row.append((jpeg_data_uri(thumbs[-1]), f"real: {r['image_id']}"))
        grid.append(row)
        if strip is None:
            hmax = max(t.shape[0] for t in thumbs)
            strip = np.concatenate([np.pad(t, ((0, hmax - t.shape[0]), (0, 4), (0, 0)), constant_values=255)
                                    for t in thumbs], axis=1)
    return header, grid, strip


# ----------------------------------------------------------------------------- HTML


def _table_html(rows: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(t)} {'&uarr;' if d > 0 else '&darr;'}</th>" for t, _, _, d, _ in COLUMNS)
    best = []
    for j, (_, _, _, d, _) in enumerate(COLUMNS):
        vals = [r["cells"][j][0] for r in rows if r["cells"][j][0] is not None and np.isfinite(r["cells"][j][0])]
        top = None if not vals else (max(vals) if d > 0 else min(vals))
        # no "best" in a column of equal values (e.g. all zeros) or when the best is tied
        best.append(top if vals and vals.count(top) == 1 and len(set(vals)) > 1 else None)
    body = []
    for r in rows:
        tds = "".join(f"<td class=\"{'best' if v is not None and v == best[j] else ''}\">{html.escape(t)}</td>"
                      for j, (v, t) in enumerate(r["cells"]))
        body.append(f"<tr><td class=\"name\">{html.escape(r['variant'])}</td>{tds}</tr>")
    return f"<table id=\"variants\"><tr><th>variant</th>{head}</tr>{''.join(body)}</table>"


def _dedupe_html(dedupe: dict) -> str:
    flat = []

    def walk(prefix, v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        else:
            flat.append((prefix, v))
    walk("", dedupe)
    rows = "".join(f"<tr><td class=\"name\">{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in flat)
    return f"<table id=\"dedupe\"><tr><th>count</th><th>value</th></tr>{rows}</table>"


def _grid_html(header: list[str], grid: list[list], width_px: int) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = []
    for row in grid:
        tds = []
        for uri, cap in row:
            img = f"<img src=\"{uri}\" width=\"{width_px}\" alt=\"{html.escape(cap)}\">" if uri else "<div>&mdash;</div>"
            tds.append(f"<td>{img}{html.escape(cap)}</td>")
        trs.append(f"<tr>{''.join(tds)}</tr>")
    return f"<table class=\"grid\"><tr>{th}</tr>{''.join(trs)}</table>"


def render_html(rows: list[dict], dedupe: dict, params_text: str, blur_png: str, spec_png: str,
                grid: tuple[list[str], list[list]], width_px: int, head: str = "", calibration: str = "") -> str:
    extractor = sorted({r["gap"].get("feature_extractor", "?") for r in rows})
    fallback = any(e == "random-fallback" for e in extractor)
    kid_note = ("KID/PAD features: " + ", ".join(html.escape(e) for e in extractor)
                + (" &mdash; <b>random-fallback</b>: a fixed-seed random CNN (no local Inception weights); "
                   "values are comparable between variants of this report only, not with published KID"
                   if fallback else ""))
    return _template("page.html").substitute(
        css=_template("report.css").template, head=head, table=_table_html(rows), kid_note=kid_note,
        blur_png=blur_png, spec_png=spec_png, grid=_grid_html(*grid, width_px), dedupe=_dedupe_html(dedupe),
        calibration=calibration, params=html.escape(params_text))


def build_report(params_path: Path, metrics_dir: Path, gap_dir: Path, dedupe_path: Path,
                 real_frames_csv: Path, calibration_path: Path, calibration_curves: Path, *,
                 roots: Sequence[str | Path]) -> tuple[str, dict, np.ndarray | None, pd.DataFrame]:
    """Return (HTML text, headline summary {variant: {...}}, first grid row as an image or None,
    the recall-by-distance table). ``calibration_path`` / ``calibration_curves``: the calibrate
    stage's report JSON and curve folder. ``roots``: the data roots
    (:func:`sim2real.safety.data_roots`) every manifest path read must lie in."""
    params_text = params_path.read_text() if params_path.is_file() else None
    if params_text is None:
        raise DataError(params_path, "params file not found")
    params = yaml.safe_load(params_text) or {}
    variants = params.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise DataError(params_path, "no 'variants' mapping")
    rep = params.get("report") or {}
    width = int(rep.get("thumb_width_px", 414))
    rows = variant_rows(variants, metrics_dir, gap_dir, roots=roots)
    dedupe = read_json(dedupe_path)
    blur_png = png_data_uri(blur_figure(rows))
    spec_png = png_data_uri(spectrum_figure(rows))
    header, grid, strip = image_grid(variants, real_frames_csv, int(rep.get("grid_frames", 2)), width, roots=roots)
    metrics = {r["variant"]: r["metrics"] for r in rows}
    level = headline.level_of(metrics)
    recall = headline.recall_by_distance(metrics, level)
    controls = [v for v, spec in variants.items() if isinstance(spec, dict) and spec.get("seed_offset")]
    head = headline.headline_html(metrics, png_data_uri(headline.gap_figure(metrics, level)),
                                  png_data_uri(headline.recall_figure(recall)), level, controls)
    calibration = calib.calibration_html(read_json(calibration_path),
                                         png_data_uri(calib.curves_figure(calib.read_curves(calibration_curves))))
    text = render_html(rows, dedupe, params_text, blur_png, spec_png, (header, grid), width, head, calibration)
    summary: dict[str, Any] = {r["variant"]: {c[4]: v for c, (v, _) in zip(COLUMNS, r["cells"]) if v is not None}
                               for r in rows}
    return text, summary, strip, recall
