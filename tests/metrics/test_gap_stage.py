"""Stage gap@<variant> on the miniature world (the session's `dvc repro`): the headline result,
the JSON/CSV outputs, the W&B offline runs and DVCLive metrics, and DVC's metrics/plots views."""
from __future__ import annotations

import filecmp
import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import dvc, run
from sim2real.tracking import offline_runs, read_offline_run

HEADLINE = ("blur_profile_distance", "kid", "pad", "colour_w1_lab", "spectrum_slope_abs_diff", "noise_sigma_abs_diff")


def variants(repo) -> dict:
    return yaml.safe_load((repo / "params.yaml").read_text())["variants"]


def gap_json(repo, name: str) -> dict:
    return json.loads((repo / "reports" / "gap" / f"{name}.json").read_text())


@pytest.mark.slow
def test_depth_blur_narrows_the_blur_profile_gap(pipeline_repo):
    """Done-means: the demo's real side is blurrier with distance, so the depth_blur variant's
    blur-vs-distance profile is closer to real than the baseline's."""
    base, blur = gap_json(pipeline_repo, "baseline"), gap_json(pipeline_repo, "depth_blur")
    print(f"\nblur_profile_distance baseline={base['blur_profile_distance']:.4f} "
          f"depth_blur={blur['blur_profile_distance']:.4f} (bins used {base['blur']['bins_used']}/"
          f"{blur['blur']['bins_used']}; boxes sim {base['blur']['sim_boxes']}, real {base['blur']['real_boxes']})")
    assert blur["blur_profile_distance"] < base["blur_profile_distance"]
    assert base["blur"]["bins_used"] >= 2 and blur["blur"]["bins_used"] >= 2
    # the spectrum agrees: distance blur steepens the sim slope towards the (blurrier) real one
    assert blur["spectrum_slope_abs_diff"] < base["spectrum_slope_abs_diff"]


@pytest.mark.slow
def test_gap_outputs_are_finite_labelled_and_tracked(pipeline_repo):
    repo = pipeline_repo
    sha = run(["git", "rev-parse", "--short=7", "HEAD"], cwd=repo).stdout.strip()
    runs = {}
    for path in offline_runs(repo):
        r = read_offline_run(path)
        runs[r["name"]] = r
    for name in variants(repo):
        g = gap_json(repo, name)
        for k in HEADLINE:
            assert math.isfinite(g[k]), (name, k)
        assert g["feature_extractor"] == "random-fallback"               # no Inception weights offline
        assert g["features"]["kid_subset_size"] <= min(g["n_sim_images"], g["n_real_images"])
        assert g["directions"]["kid"] == "lower is better"
        prof = pd.read_csv(repo / "reports" / "gap" / name / "blur_profile.csv")
        assert {"height_px", "sim_log10_sharpness", "real_log10_sharpness", "sim_n", "real_n"} <= set(prof.columns)
        assert len(pd.read_csv(repo / "reports" / "gap" / name / "spectrum.csv")) >= 10
        # DVCLive (what `dvc exp show` lists) and the offline W&B run hold the same numbers
        live = json.loads((repo / "reports" / "live" / "gap" / name / "metrics.json").read_text())
        assert {k: live[k] for k in HEADLINE} == {k: g[k] for k in HEADLINE}
        assert (repo / "reports" / "live" / "gap" / name / "plots" / "images" / "blur_profile.png").is_file()
        wb = runs[f"gap-{name}"]
        assert wb["group"] == "workspace" and sha in wb["tags"] and name in wb["tags"]
        for k in HEADLINE:
            assert wb["summary"][k] == pytest.approx(g[k])
        assert "blur_profile.path" in wb["summary"] and "sample_sim_vs_real.path" in wb["summary"]
    assert "report" in runs and "image_grid.path" in runs["report"]["summary"]


@pytest.mark.slow
def test_dvc_lists_gap_metrics_and_renders_plots(pipeline_repo, tmp_path):
    shown = json.loads(dvc(pipeline_repo, "metrics", "show", "--json").stdout)
    text = json.dumps(shown)
    for name in variants(pipeline_repo):
        assert f"reports/live/gap/{name}/metrics.json" in text
    out = tmp_path / "plots"
    dvc(pipeline_repo, "plots", "show", "-o", str(out))
    html = (out / "index.html").read_text()
    assert "Blur vs distance" in html and "blur_profile.csv" in html


@pytest.mark.slow
def test_gap_stage_is_deterministic(pipeline_repo, tmp_path):
    """Rerunning the stage gives byte-identical JSON and curves (tracking writes outside them)."""
    out = tmp_path / "again"
    subprocess.run([sys.executable, "-m", "stages.gap", "--variant", "depth_blur",
                    "--frames", "data/aug/depth_blur/frames.csv", "--real-frames", "data/ingest/real_frames.csv",
                    "--real-boxes", "data/ingest/real_boxes.csv", "--out", str(out / "depth_blur.json"),
                    "--curves", str(out / "depth_blur")], cwd=pipeline_repo, check=True, capture_output=True,
                   env={**__import__("os").environ, "WANDB_MODE": "disabled", "PYTHONPATH": ""})
    ref = pipeline_repo / "reports" / "gap"
    assert filecmp.cmp(out / "depth_blur.json", ref / "depth_blur.json", shallow=False)
    for f in ("blur_profile.csv", "spectrum.csv"):
        assert filecmp.cmp(out / "depth_blur" / f, ref / "depth_blur" / f, shallow=False)
