"""sim2real.report.page: a self-contained HTML page from the evaluate/gap/dedupe outputs (made here), and
the real pipeline's report opened in headless Chromium."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from sim2real.errors import DataError
from sim2real.formats.images import write_image
from sim2real.report import page as report
from sim2real.safety import data_roots

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
VARIANTS = {"baseline": {"data": "data/dedupe", "images": "data/demo"},
            "depth_blur": {"data": "data/aug/depth_blur", "images": "data/aug/depth_blur"}}


class Page(HTMLParser):
    """Collects <img> sources, table ids and the rows of table#variants."""

    def __init__(self):
        super().__init__()
        self.imgs, self.tables, self.variant_rows, self._table = [], [], [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        elif tag == "table":
            self._table = a.get("id")
            self.tables.append(self._table)
        elif tag == "tr" and self._table == "variants":
            self.variant_rows.append(a)

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None


def check_images(srcs: list[str]) -> None:
    """Every <img> is an embedded data: URI that decodes to a real image (no broken links)."""
    assert srcs
    for src in srcs:
        m = re.match(r"data:image/(png|jpeg);base64,(.*)$", src, re.S)
        assert m, f"not an embedded image: {src[:60]}"
        img = cv2.imdecode(np.frombuffer(base64.b64decode(m.group(2)), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[0] > 10 and img.shape[1] > 10


def metrics_file(name: str, k: int) -> dict:
    """A score-stage metrics file (the keys the report reads), values scaled by k."""
    g = {"value": 0.41, "ci95": [0.22, 0.6], "denominator_ci95": [3.0, 9.0]} if name == "depth_blur" else \
        {"value": 0.0, "ci95": [0.0, 0.0], "denominator_ci95": [3.0, 9.0], "reason": "baseline is a reference"}
    bins = {b: {"n_gt": n, "recall": 0.1 * k, "recall_ci95": [0.05 * k, 0.15 * k],
                "vs_baseline": {"recall": {"value": 0.05 if name == "depth_blur" else 0.0, "ci95": [-0.02, 0.12]}}}
            for b, n in (("0-20", 12), ("20-40", 9), ("40-60", 5), ("60+", 3))}
    return {"kitti": {"Car": {"easy": 10.0 * k, "easy_ci95": [9.0 * k, 11.0 * k], "moderate": 8.0 * k,
                              "moderate_ci95": [7.0 * k, 9.0 * k], "hard": None, "hard_ci95": None}},
            "mAP50": {"all": 0.1 * k}, "mAP50_ci95": [0.05 * k, 0.15 * k], "val_images": 20,
            "bootstrap": {"resamples": 1000, "level": 0.95},
            "gap_closure": {"kitti_car_moderate": g, "mAP50": g},
            "by_distance": {"bins_m": [[0, 20], [20, 40], [40, 60], [60, None]], "bins": bins}}


def fake_inputs(root: Path) -> None:
    """A minimal set of everything the report reads (two variants, three frames, two real frames)."""
    rng = np.random.default_rng(0)
    (root / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "variants": VARIANTS,
                                                      "report": {"grid_frames": 2, "thumb_width_px": 120}}))
    for name, spec in VARIANTS.items():
        rows = []
        for i in range(3):
            fid = f"Scene01_clone_c0_{i:05d}"
            img = Path(spec["data"]) / "images" / f"{fid}.jpg"
            write_image(root / img, rng.integers(0, 255, (40, 130, 3), dtype=np.uint8))
            rows.append({"frame_id": fid, "image": str(img), "label": ""})
        pd.DataFrame(rows).to_csv(root / spec["data"] / "frames.csv", index=False)
        (root / "reports/metrics").mkdir(parents=True, exist_ok=True)
        k = len(rows) + (name == "depth_blur")
        (root / f"reports/metrics/{name}.json").write_text(json.dumps(metrics_file(name, k)))
        gap_dir = root / "reports/gap" / name
        gap_dir.mkdir(parents=True)
        d = 0.3 if name == "baseline" else 0.1
        (root / f"reports/gap/{name}.json").write_text(json.dumps(
            {"kid": 0.01, "pad": 2.0, "blur_profile_distance": d, "colour_w1_lab": 5.0,
             "spectrum_slope_abs_diff": 0.5, "feature_extractor": "random-fallback"}))
        pd.DataFrame({"height_px": [15.8, 35.4], "sim_log10_sharpness": [-0.3, -0.6],
                      "real_log10_sharpness": [-0.6, -0.9], "sim_n": [5, 5], "real_n": [5, 5]}).to_csv(
            gap_dir / "blur_profile.csv", index=False)
        pd.DataFrame({"frequency_cpp": [0.01, 0.1, 0.4], "sim_log10_power": [5, 3, 1],
                      "real_log10_power": [5, 2.5, 0]}).to_csv(gap_dir / "spectrum.csv", index=False)
    real = []
    for i in range(2):
        img = Path("data/demo/kitti/training/image_2") / f"{i:06d}.png"
        write_image(root / img, rng.integers(0, 255, (40, 130, 3), dtype=np.uint8))
        real.append({"image_id": f"{i:06d}", "split": "val", "image": str(img)})
    (root / "data/ingest").mkdir(parents=True)
    pd.DataFrame(real).to_csv(root / "data/ingest/real_frames.csv", index=False)
    (root / "reports/dedupe.json").write_text(json.dumps({"boxes_in": 10, "boxes_kept": 7,
                                                          "dropped_by_reason": {"hidden": 3}}))
    (root / "reports/calibration").mkdir(parents=True)
    (root / "reports/calibration.json").write_text(json.dumps({
        "recovery": {"noise_sigma": {"hidden": 2.5, "recovered": 2.6, "rel_error": 0.04, "tolerance": 0.2},
                     "wb_gain_b": {"hidden": 0.72, "recovered": 0.80, "rel_error": 0.111, "tolerance": 0.05},
                     "contrast": {"hidden": 0.9, "recovered": 0.89, "rel_error": 0.011, "tolerance": None}},
        "statistics": {"noise_sigma": {"before": 0.45, "after": 0.01, "unit": "gray levels"}}}))
    for name in ("blur_vs_distance", "sharpness_vs_distance", "contrast_vs_distance"):
        pd.DataFrame({"distance_m": [8.0, 25.0, 40.0], "real": [1.4, 1.8, 2.2], "before": [1.2, 1.4, 1.5],
                      "after": [1.4, 1.7, 2.1], "n_real": [9, 9, 9], "n_sim": [9, 9, 9]}).to_csv(
            root / f"reports/calibration/{name}.csv", index=False)


def build(root: Path) -> tuple[str, dict, np.ndarray, pd.DataFrame]:
    return report.build_report(root / "params.yaml", root / "reports/metrics", root / "reports/gap",
                               root / "reports/dedupe.json", root / "data/ingest/real_frames.csv",
                               root / "reports/calibration.json", root / "reports/calibration",
                               roots=data_roots(None, base=root))


def test_report_has_table_curves_grid_dedupe_params_and_is_deterministic(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_inputs(tmp_path)
    text, summary, strip, recall = build(tmp_path)
    page = Page()
    page.feed(text)
    # table, calibration (hidden vs recovered, statistics), image grid, dedupe counts
    assert page.tables == ["variants", "recovery", "calibration-statistics", None, "dedupe"]
    assert len(page.variant_rows) == 1 + len(VARIANTS)               # header + one row per variant
    # 2 headline plots + 2 plots + the calibration curves + 2 grid rows x (clean sim, depth_blur, real)
    assert len(page.imgs) == 2 + 2 + 1 + 2 * 3
    # the recovery table says which parameter misses its tolerance
    assert re.search(r"white balance blue/green \(linear\)</td><td>0\.7200</td><td>0\.8000</td><td>11\.1 %</td>"
                     r"<td>5 %</td><td>no</td>", text)
    check_images(page.imgs)
    assert "http://" not in text and "https://" not in text and "<script" not in text   # opens offline
    assert "random-fallback" in text and "boxes_kept" in text and "thumb_width_px: 120" in text
    # best value per column highlighted: depth_blur has the lower blur-profile distance
    assert re.search(r'<td class="best">0\.100</td>', text)
    assert summary["depth_blur"]["blur_profile_distance"] == 0.1 and "ap_car_hard" not in summary["baseline"]
    assert strip.dtype == np.uint8 and strip.shape[1] > 3 * 120
    assert build(tmp_path)[0] == text                                # same inputs, same bytes
    # the first lines answer the question: a sentence per variant, the far-car line, cars per bin
    first = text[text.index("<h1>"):text.index("<h2>")]
    assert "depth_blur closes 41 % [22 %, 60 %] of the gap" in first
    assert "baseline is the reference" in first
    assert "Does depth_blur help far cars (60+ m, 3 cars)? Not measurable at this sample size" in first
    assert "60+ m: 3" in first and 'id="gap-closure"' in first and 'id="recall-by-distance"' in first
    # AP cells carry their intervals; the recall table feeds dvc plots
    assert "32.0 [28.0, 36.0]" in text
    assert list(recall.columns) == ["variant", "bin", "bin_start_m", "value", "lo", "hi", "n_gt"]
    assert len(recall) == 2 * 4 and recall["bin"].tolist()[:4] == ["0-20", "20-40", "40-60", "60+"]


def test_a_column_of_equal_values_has_no_best(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_inputs(tmp_path)
    for name in VARIANTS:
        p = tmp_path / f"reports/metrics/{name}.json"
        m = json.loads(p.read_text())
        m["kitti"]["Car"].update(easy=0.0, moderate=0.0)
        m["mAP50"]["all"] = 0.0
        p.write_text(json.dumps(m))
    text = build(tmp_path)[0]
    table = text[text.index('<table id="variants">'):text.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", table)[1:]
    for r in rows:
        cells = re.findall(r'<td class="([^"]*)">', r)
        assert cells[1:5] == ["", "", "", ""]                          # zeros are nobody's best


def test_report_requires_every_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_inputs(tmp_path)
    (tmp_path / "reports/metrics/depth_blur.json").unlink()
    with pytest.raises(DataError, match=r"reports/metrics/depth_blur\.json: report input not found"):
        build(tmp_path)
    fake_inputs_dir = tmp_path / "again"
    fake_inputs_dir.mkdir()
    monkeypatch.chdir(fake_inputs_dir)
    fake_inputs(fake_inputs_dir)
    (fake_inputs_dir / "reports/gap/baseline.json").write_text(json.dumps({"kid": 0.1}))
    with pytest.raises(DataError, match=r"baseline\.json: missing value for report column 'PAD'"):
        build(fake_inputs_dir)
    (fake_inputs_dir / "reports/gap/baseline.json").write_text(json.dumps(
        {"kid": 0.01, "pad": 2.0, "blur_profile_distance": 0.3, "colour_w1_lab": 5.0,
         "spectrum_slope_abs_diff": 0.5, "feature_extractor": "random-fallback"}))
    build(fake_inputs_dir)
    (fake_inputs_dir / "reports/calibration/contrast_vs_distance.csv").unlink()
    with pytest.raises(DataError, match=r"contrast_vs_distance\.csv: calibration curve not found"):
        build(fake_inputs_dir)


def test_recovery_markdown_marks_misses_and_is_empty_without_a_hidden_camera():
    from sim2real.report.calibration import recovery_markdown
    rec = {"wb_gain_b": {"hidden": 0.72293, "recovered": 0.7612, "rel_error": 0.053, "tolerance": 0.05},
           "haze_visibility_m": {"hidden": 450.0, "recovered": 422.2, "rel_error": 0.0617, "tolerance": 0.25},
           "contrast": {"hidden": 0.9, "recovered": 0.8898, "rel_error": 0.0113, "tolerance": None}}
    lines = recovery_markdown({"recovery": rec}).splitlines()
    assert lines[2:] == ["| haze visibility (m) | 450.0 | 422.2 | 6.2 % | 25 % | yes |",
                         "| white balance blue/green (linear) | 0.7229 | 0.7612 | 5.3 % | 5 % | **no** |",
                         "| contrast | 0.900 | 0.890 | 1.1 % | — | — |"]
    assert recovery_markdown({"statistics": {}}) == ""


# ----------------------------------------------------------------------------- real browser
def chromium(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} not found: run `make chromium` (Debian package chromium)"
    profile = tempfile.mkdtemp(prefix="sim2real-chromium-")
    try:
        return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                               "--no-first-run", "--disable-background-networking", "--disable-component-update",
                               "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.slow
def test_pipeline_report_in_headless_chromium(pipeline_repo, tmp_path):
    page_path = pipeline_repo / "reports" / "index.html"
    assert page_path.is_file()
    # copy it away from the repo: it must open with nothing beside it
    lonely = tmp_path / "index.html"
    shutil.copy(page_path, lonely)
    shot = tmp_path / "shot.png"
    chromium("--window-size=1400,2200", f"--screenshot={shot}", lonely.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[:2] == (2200, 1400)
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3), axis=0)) > 500     # not blank
    dom = chromium("--dump-dom", lonely.as_uri()).stdout
    page = Page()
    page.feed(dom)
    variants = yaml.safe_load((pipeline_repo / "params.yaml").read_text())["variants"]
    assert "variants" in page.tables and "dedupe" in page.tables and "calibration-statistics" in page.tables
    assert len(page.variant_rows) == 1 + len(variants)
    check_images(page.imgs)
    assert len(page.imgs) >= 2 + 2                                    # two plots + at least one grid row
    for name in variants:
        assert f">{name}</td>" in dom


def test_training_noise_line_reads_the_negative_control():
    from sim2real.report.study import noise_line

    def m(value, lo, hi):
        return {"gap_closure": {"kitti_car_moderate": {"value": value, "ci95": [lo, hi]}}}

    covered = noise_line({"control": m(-0.05, -0.12, 0.03)}, ["control"], 0.95)
    assert "G = -0.05 [-0.12, 0.03]" in covered and "covers 0" in covered
    off = noise_line({"control": m(-0.24, -0.34, -0.16)}, ["control"], 0.95)
    assert "moves G by about 0.24" in off and "covers 0" not in off
    assert noise_line({"control": m(None, None, None)}, ["control"], 0.95) == ""
    assert noise_line({"control": m(-0.24, -0.34, -0.16)}, [], 0.95) == ""
