"""The study's headline for the report: one sentence per variant, gap-closure bars, recall by
distance, and the far-car answer — all read from ``reports/metrics/<variant>.json``
(:mod:`sim2real.metrics.study`). Pure functions of the metric dicts; figures are matplotlib.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from sim2real.metrics.study import BASELINE, ORACLE, ci_key

HEADLINE = ("kitti_car_moderate", "Car Moderate AP|R40")
RECALL_COLUMNS = ["variant", "bin", "bin_start_m", "value", "lo", "hi", "n_gt"]


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _interval(ci, fmt=_pct) -> str:
    return "[n/a]" if ci is None else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def level_of(metrics: Mapping[str, dict]) -> float:
    """The interval level the metric files were written with (their ``bootstrap.level``)."""
    levels = {float(m.get("bootstrap", {}).get("level", 0.95)) for m in metrics.values()}
    return levels.pop() if len(levels) == 1 else 0.95


def sentence(variant: str, m: dict, level: float) -> str:
    """"depth_blur closes 41 % [22 %, 60 %] of the gap (Car Moderate AP|R40)", or why not."""
    k = ci_key(level)
    key, label = HEADLINE
    g = m.get("gap_closure", {}).get(key, {})
    ap = m.get("kitti", {}).get("Car", {})
    ap_txt = (f"AP {ap.get('moderate'):.1f} {_interval(ap.get(f'moderate_{k}'), lambda x: f'{x:.1f}')}"
              if ap.get("moderate") is not None else "AP n/a")
    if variant == BASELINE:
        return f"{variant} is the reference (G = 0): {label} {ap_txt}."
    if variant == ORACLE:
        return f"{variant} is the oracle trained on real KITTI (G = 1): {label} {ap_txt}."
    if g.get("value") is None:
        return f"{variant}: gap closure not measurable ({g.get('reason', 'no value')}); {label} {ap_txt}."
    return f"{variant} closes {_pct(g['value'])} {_interval(g.get(k))} of the gap ({label}; {ap_txt})."


def best_variant(metrics: Mapping[str, dict]) -> str | None:
    """The non-reference variant with the highest measurable G (Car Moderate), else None."""
    cands = [(m["gap_closure"][HEADLINE[0]]["value"], v) for v, m in metrics.items()
             if v not in (BASELINE, ORACLE) and m.get("gap_closure", {}).get(HEADLINE[0], {}).get("value") is not None]
    return max(cands)[1] if cands else None


def far_car_answer(metrics: Mapping[str, dict], level: float) -> str:
    """One line: does the best variant recall more far cars (last distance bin) than the baseline?

    Decided by the paired bootstrap interval of its far-bin recall minus the baseline's."""
    k = ci_key(level)
    best = best_variant(metrics)
    if best is None:
        cands = [v for v in metrics if v not in (BASELINE, ORACLE)]
        if not cands:
            return "Does any variant help far cars? No augmented variant was scored."
        best = max(cands, key=lambda v: metrics[v].get("kitti", {}).get("Car", {}).get("moderate") or -1.0)
    bins = metrics[best].get("by_distance", {}).get("bins", {})
    if not bins:
        return f"Does {best} help far cars? Not measured (no by_distance block)."
    far = list(bins)[-1]
    b = bins[far]
    d = b.get("vs_baseline", {}).get("recall", {})
    ci = d.get(k)
    q = f"Does {best} help far cars ({far} m, {b.get('n_gt', 0)} cars)?"
    if d.get("value") is None or ci is None:
        return f"{q} Not measurable: no far cars or no detections to compare."
    diff = f"recall {d['value']:+.2f} vs baseline {_interval(ci, lambda x: f'{x:+.2f}')}"
    if ci[0] > 0:
        return f"{q} Yes: {diff}."
    if ci[1] < 0:
        return f"{q} No, it recalls fewer: {diff}."
    return f"{q} Not measurable at this sample size: {diff} includes 0."


def recall_by_distance(metrics: Mapping[str, dict], level: float) -> pd.DataFrame:
    """Rows (variant, bin, bin_start_m, value, lo, hi, n_gt): recall at each variant's F1
    operating point per distance bin with its bootstrap interval (NaN where undefined)."""
    k = ci_key(level)
    rows = []
    for v, m in metrics.items():
        bd = m.get("by_distance", {})
        starts = [b[0] for b in bd.get("bins_m", [])]
        for i, (name, b) in enumerate(bd.get("bins", {}).items()):
            ci = b.get(f"recall_{k}") or [np.nan, np.nan]
            rows.append({"variant": v, "bin": name, "bin_start_m": starts[i] if i < len(starts) else np.nan,
                         "value": np.nan if b.get("recall") is None else b["recall"], "lo": ci[0], "hi": ci[1],
                         "n_gt": b.get("n_gt", 0)})
    return pd.DataFrame(rows, columns=RECALL_COLUMNS)


def gap_figure(metrics: Mapping[str, dict], level: float):
    """Bar chart of G (Car Moderate AP|R40 and mAP50) per augmented variant, percentile-interval
    error bars; unmeasurable G drawn as an empty slot labelled n/a."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = ci_key(level)
    names = [v for v in metrics if v not in (BASELINE, ORACLE)]
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    width = 0.38
    for j, (key, label) in enumerate((("kitti_car_moderate", "Car Moderate AP|R40"), ("mAP50", "mAP50"))):
        xs = np.arange(len(names)) + (j - 0.5) * width
        for x, v in zip(xs, names):
            g = metrics[v].get("gap_closure", {}).get(key, {})
            if g.get("value") is None:
                ax.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=8, rotation=90)
                continue
            ci = g.get(k) or [g["value"], g["value"]]
            ax.bar(x, g["value"], width, color=f"C{j}", label=label if x == xs[0] or v == names[0] else None,
                   yerr=[[g["value"] - ci[0]], [ci[1] - g["value"]]], capsize=3)
    ax.axhline(0, color="black", lw=0.8)
    ax.axhline(1, color="grey", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel(f"gap closure G ({int(round(level * 100))} % CI)")
    ax.set_title("Share of the sim-to-real gap closed (0 = baseline, 1 = real-data oracle)")
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def recall_figure(table: pd.DataFrame):
    """Recall vs distance bin per variant with interval error bars (the oracle drawn black)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    bins = list(dict.fromkeys(table.sort_values("bin_start_m", kind="stable")["bin"]))
    x_of = {b: i for i, b in enumerate(bins)}
    variants = list(dict.fromkeys(table["variant"]))
    for j, v in enumerate(variants):
        t = table[table["variant"] == v]
        x = np.array([x_of[b] for b in t["bin"]], float) + (j - (len(variants) - 1) / 2) * 0.04
        y, lo, hi = (t[c].to_numpy(float) for c in ("value", "lo", "hi"))
        style = dict(color="black", lw=2.2) if v == ORACLE else dict(color=f"C{j}")
        ax.errorbar(x, y, yerr=[np.nan_to_num(y - lo), np.nan_to_num(hi - y)], marker="o", capsize=3, label=v, **style)
    counts = table.drop_duplicates("bin").set_index("bin")["n_gt"]
    ax.set_xticks(range(len(bins)), [f"{b} m\n({int(counts.get(b, 0))} cars)" for b in bins])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall at the F1 operating point")
    ax.set_title("Car recall by distance (IoU > 0.7), with bootstrap intervals")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def noise_line(metrics: Mapping[str, dict], controls: Sequence[str], level: float) -> str:
    """What the negative controls (a variant's data trained with other seeds) say about training
    noise: their G should be 0; "" without a control or a measurable G."""
    k = ci_key(level)
    parts = []
    for v in controls:
        g = metrics.get(v, {}).get("gap_closure", {}).get(HEADLINE[0], {})
        if g.get("value") is None:
            continue
        ci = g.get(k)
        covers = ci is not None and ci[0] <= 0 <= ci[1]
        parts.append(f"the negative control {v} gets G = {g['value']:.2f} {_interval(ci, lambda x: f'{x:.2f}')}"
                     + (", an interval that covers 0." if covers else
                        f": one training seed moves G by about {abs(g['value']):.2f} here, more than the "
                        f"val-image intervals show, so differences in G below that are not established by one "
                        f"seed (train.seeds adds seeds and their t-interval)."))
    return ("Training noise: " + "; ".join(parts)) if parts else ""


def headline_html(metrics: Mapping[str, dict], gap_png: str, recall_png: str, level: float,
                  controls: Sequence[str] = ()) -> str:
    """The report's first section: sentences, training-noise line, far-car line, cars per bin, figures."""
    items = "".join(f"<li>{html.escape(sentence(v, m, level))}</li>" for v, m in metrics.items())
    noise = noise_line(metrics, controls, level)
    any_m = next(iter(metrics.values()), {})
    bins = any_m.get("by_distance", {}).get("bins", {})
    per_bin = ", ".join(f"{html.escape(b)} m: {d.get('n_gt', 0)}" for b, d in bins.items()) or "n/a"
    n_img = any_m.get("val_images", "?")
    boot = any_m.get("bootstrap", {})
    return (f"<ul id=\"headline\">{items}</ul>\n"
            + (f"<p id=\"training-noise\"><b>{html.escape(noise)}</b></p>\n" if noise else "")
            + f"<p id=\"far-cars\"><b>{html.escape(far_car_answer(metrics, level))}</b></p>\n"
            f"<p class=\"note\">Real val: {n_img} images; Car ground truth per distance bin: {per_bin}. "
            f"Intervals: {int(round(level * 100))} % percentile bootstrap over val images "
            f"({boot.get('resamples', '?')} resamples, paired across variants); G = (v &minus; baseline) / "
            f"(real &minus; baseline), null when the real&minus;baseline interval includes 0.</p>\n"
            f"<img id=\"gap-closure\" src=\"{gap_png}\" alt=\"gap closure per variant\">\n"
            f"<img id=\"recall-by-distance\" src=\"{recall_png}\" alt=\"recall by distance\">\n")


def answer_markdown(metrics: Mapping[str, dict]) -> str:
    """The README's answer table (Markdown) from the metric dicts: oracle, baseline, then the rest
    in the given order; KITTI Car AP|R40 in percent, mAP50, G with their bootstrap intervals.

    ``python -m sim2real.report.study reports/metrics params.yaml`` prints it for the README."""
    k = ci_key(level_of(metrics))

    def num(x, fmt: str) -> str:
        return "n/a" if x is None else format(x, fmt)

    def with_ci(x, ci, fmt: str) -> str:
        return num(x, fmt) if ci is None else f"{num(x, fmt)} [{num(ci[0], fmt)}, {num(ci[1], fmt)}]"

    lines = [f"| variant | Car Easy | Car Moderate [{k[2:]} % CI] | Car Hard | mAP50 [{k[2:]} % CI] | "
             "G, Car Moderate | G, mAP50 |", "|---|---:|---:|---:|---:|---:|---:|"]
    order = [v for v in (ORACLE, BASELINE) if v in metrics] + [v for v in metrics if v not in (ORACLE, BASELINE)]
    for v in order:
        m = metrics[v]
        car = m.get("kitti", {}).get("Car", {})
        gaps = [m.get("gap_closure", {}).get(g, {}) for g in (HEADLINE[0], "mAP50")]
        g_txt = ["—" if v in (ORACLE, BASELINE) else with_ci(g.get("value"), g.get(k), ".2f") for g in gaps]
        lines.append(f"| `{v}` | {num(car.get('easy'), '.1f')} | {with_ci(car.get('moderate'), car.get(f'moderate_{k}'), '.1f')} "
                     f"| {num(car.get('hard'), '.1f')} | {with_ci(m.get('mAP50', {}).get('all'), m.get(f'mAP50_{k}'), '.3f')} "
                     f"| {g_txt[0]} | {g_txt[1]} |")
    return "\n".join(lines)



def read_variant_metrics(folder: Path, variants) -> dict[str, dict]:
    """``{variant: <folder>/<variant>.json}`` in ``variants``' order, for the variants that have a file."""
    return {v: json.loads((folder / f"{v}.json").read_text()) for v in variants if (folder / f"{v}.json").is_file()}


if __name__ == "__main__":
    import sys

    import yaml

    params = yaml.safe_load(Path(sys.argv[2]).read_text())
    print(answer_markdown(read_variant_metrics(Path(sys.argv[1]), params["variants"])))
