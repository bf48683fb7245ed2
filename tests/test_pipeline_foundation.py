"""demo -> ingest -> dedupe under real DVC; clear stage errors; no half-written outputs."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import dvc, make_repo, run, BIN

pytestmark = pytest.mark.slow


def test_dedupe_report_and_outputs(pipeline_repo):
    report = json.loads((pipeline_repo / "reports" / "dedupe.json").read_text())
    assert report["boxes_in"] == report["boxes_kept"] + sum(report["dropped_by_reason"].values())
    for reason in ("other_camera", "hidden", "sliver", "class_conflict"):
        assert report["dropped_by_reason"][reason] > 0, reason
    frames = pd.read_csv(pipeline_repo / "data" / "dedupe" / "frames.csv")
    assert len(frames) == report["frames"] > 0
    assert all((pipeline_repo / p).is_file() for p in frames["label"])
    assert all((pipeline_repo / p).is_file() for p in frames["image"])
    kept = pd.read_csv(pipeline_repo / "data" / "dedupe" / "boxes_kept.csv")
    assert len(kept) == report["boxes_kept"] == frames["n_boxes"].sum()
    assert set(kept["cameraID"]) == {0}


def test_second_repro_is_a_noop_and_status_clean(pipeline_repo):
    out = dvc(pipeline_repo, "repro").stdout
    assert "Running stage" not in out
    assert "up to date" in dvc(pipeline_repo, "status").stdout


def test_stage_error_is_one_clear_line(tmp_path):
    repo = make_repo(tmp_path / "repo", {"data": {"source": "vkitti2", "vkitti2_root": str(tmp_path / "nowhere"), "kitti_root": str(tmp_path)}})
    proc = run([str(BIN / "python"), "-m", "stages.ingest", "--out", "data/ingest"], cwd=repo, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'nowhere'}: vKITTI2 root folder not found (set data.vkitti2_root)"
    assert "Traceback" not in proc.stderr
    assert not (repo / "data" / "ingest").exists() and not list((repo / "data").glob(".ingest.tmp-*"))
    assert not list(repo.glob(".sim2real/tmp/ingest-*.tmp-*"))


def test_rerunning_stages_leaves_dvc_metrics_diff_empty(pipeline_repo):
    """A reviewer diffs metrics between commits: rerunning the stages whose reports used to carry
    wall-clock seconds or run history (cyclegan_train/translate, style_transfer) changes no metric."""
    run(["git", "add", "-A"], cwd=pipeline_repo)
    run(["git", "commit", "-q", "--allow-empty", "-m", "pipeline run"], cwd=pipeline_repo)
    dvc(pipeline_repo, "repro", "-f", "-s", "cyclegan_train", "cyclegan_translate", "style_transfer")
    diff = json.loads(dvc(pipeline_repo, "metrics", "diff", "--json").stdout or "{}")
    assert diff == {}, diff
