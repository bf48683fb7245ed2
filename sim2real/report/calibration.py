"""The calibration section of the report: hidden vs recovered camera (demo world), the calibration
statistics before and after the fit, and the fitted-vs-real curves, all read from the calibrate
stage's outputs (``reports/calibration.json``, ``reports/calibration/<statistic>.csv``).

``python -m sim2real.report.calibration reports/calibration.json`` prints the README's recovery
table (Markdown); a test checks that the README carries it.
"""
from __future__ import annotations

import html
import json
import sys
from pathlib import Path

import pandas as pd

from sim2real.errors import DataError

#: the label, unit and number format of each recovered parameter, in table order
RECOVERY_ROWS = {
    "blur_sigma_at_30m_px": ("blur σ at 30 m", "px", ".3f"),
    "haze_visibility_m": ("haze visibility", "m", ".1f"),
    "noise_sigma": ("noise σ", "gray levels", ".3f"),
    "wb_gain_r": ("white balance red/green", "linear", ".4f"),
    "wb_gain_b": ("white balance blue/green", "linear", ".4f"),
    "contrast": ("contrast", "", ".3f"),
}
#: the curve CSVs the calibrate stage writes, with their y-axis label
CURVES = {"blur_vs_distance": "effective blur σ [px]", "sharpness_vs_distance": "log10 box sharpness",
          "contrast_vs_distance": "ln box contrast"}


def _rows(recovery: dict) -> list[tuple[str, dict]]:
    known = [k for k in RECOVERY_ROWS if k in recovery]
    return [(k, recovery[k]) for k in known + sorted(set(recovery) - set(known))]


def _label(key: str) -> str:
    name, unit, _ = RECOVERY_ROWS.get(key, (key, "", ".4g"))
    return f"{name} ({unit})" if unit else name


def _fmt(key: str, x) -> str:
    return "n/a" if x is None else format(float(x), RECOVERY_ROWS.get(key, ("", "", ".4g"))[2])


def _tolerance(row: dict) -> str:
    tol = row.get("tolerance")
    return "—" if tol is None else f"{100 * tol:.0f} %"


def _verdict(row: dict) -> str:
    tol = row.get("tolerance")
    return "—" if tol is None else ("yes" if row["rel_error"] <= tol else "no")


def _cells(key: str, row: dict) -> list[str]:
    """One recovery row as text: parameter, hidden, recovered, error, tolerance, within."""
    return [_label(key), _fmt(key, row["hidden"]), _fmt(key, row["recovered"]), f"{100 * row['rel_error']:.1f} %",
            _tolerance(row), _verdict(row)]


def recovery_markdown(report: dict) -> str:
    """The README's hidden-vs-recovered table from a calibration report (empty string without a
    ``recovery`` section: real data has no hidden camera)."""
    rec = report.get("recovery")
    if not rec:
        return ""
    lines = ["| parameter | hidden | recovered | error | tolerance | within |", "|---|---:|---:|---:|---:|:---:|"]
    for k, r in _rows(rec):
        cells = _cells(k, r)
        cells[-1] = "**no**" if cells[-1] == "no" else cells[-1]  # a miss stands out in the README
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read_curves(folder: Path) -> dict[str, pd.DataFrame]:
    """The fitted-vs-real curve CSVs of ``folder`` (columns distance_m, real, before, after); a
    missing file or column is an error naming the file."""
    out = {}
    for name in CURVES:
        path = Path(folder) / f"{name}.csv"
        if not path.is_file():
            raise DataError(path, "calibration curve not found (run the calibrate stage: dvc repro calibrate)")
        df = pd.read_csv(path)
        missing = {"distance_m", "real", "before", "after"} - set(df.columns)
        if missing:
            raise DataError(path, f"missing column(s) {sorted(missing)}")
        out[name] = df
    return out


def curves_figure(curves: dict[str, pd.DataFrame]):
    """One panel per statistic: real train frames, synthetic before (hand-set) and after (fitted)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = max(len(curves), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False)
    for ax, (name, df) in zip(axes[0], curves.items()):
        ax.plot(df["distance_m"], df["real"], "s--", color="black", label="real (train)")
        ax.plot(df["distance_m"], df["before"], "o-", label="synthetic, hand-set")
        ax.plot(df["distance_m"], df["after"], "o-", label="synthetic, calibrated")
        if name == "blur_vs_distance":  # a bin of a few noise-dominated boxes can read tens of px
            ax.set_yscale("log")
        ax.set_xlabel("distance [m]")
        ax.set_ylabel(CURVES[name])
        ax.grid(True, alpha=0.3)
        ax.set_title(name.replace("_", " "))
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def calibration_html(report: dict, curves_png: str) -> str:
    """The report page's calibration section: recovery table (demo), statistics before/after, curves."""
    parts = []
    rec = report.get("recovery")
    if rec:
        trs = "".join("<tr><td class=\"name\">" + "</td><td>".join(html.escape(c) for c in _cells(k, r)) + "</td></tr>"
                      for k, r in _rows(rec))
        parts.append("<p class=\"note\">The demo world's &ldquo;real&rdquo; camera is hidden in "
                     "<code>demo.real_camera</code>; calibrate sees only its images. Hidden values in the physics "
                     "model's terms (docs/calibration.md).</p>"
                     "<table id=\"recovery\"><tr><th>parameter</th><th>hidden</th><th>recovered</th><th>error</th>"
                     f"<th>tolerance</th><th>within</th></tr>{trs}</table>")
    else:
        parts.append("<p class=\"note\">No hidden camera (real data): the fit is judged by the statistics below.</p>")
    stats = report.get("statistics") or {}
    trs = "".join(f"<tr><td class=\"name\">{html.escape(k)}</td><td>{v['before']:.4g}</td><td>{v['after']:.4g}</td>"
                  f"<td>{html.escape(str(v.get('unit', '')))}</td></tr>" for k, v in sorted(stats.items()))
    parts.append("<table id=\"calibration-statistics\"><tr><th>statistic: distance to real train</th>"
                 f"<th>hand-set</th><th>calibrated</th><th>unit</th></tr>{trs}</table>")
    parts.append(f"<img id=\"calibration-curves\" src=\"{curves_png}\" alt=\"fitted vs real statistic curves\">")
    return "\n".join(parts)


if __name__ == "__main__":
    print(recovery_markdown(json.loads(Path(sys.argv[1]).read_text())))
