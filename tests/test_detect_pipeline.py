"""The detection stages inside the real `dvc repro` of the miniature world (session fixture
``pipeline_repo``): every variant trained and evaluated with finite metrics, no ultralytics cache
inside outputs, a second repro is a no-op, and a blur experiment reruns only its own chain."""
from __future__ import annotations

import json
import math
import re
import shutil

import pandas as pd
import pytest
import yaml

from conftest import dvc, run
from sim2real.formats import kitti

VARIANTS = {"baseline", "depth_blur", "style", "cyclegan", "mix"}
AP_KEYS = ("easy", "moderate", "hard", "easy_R11", "moderate_R11", "hard_R11")


def _params(repo):
    return yaml.safe_load((repo / "params.yaml").read_text())


def _moderate_cars(label_dir) -> int:
    """Independent count of Car boxes the devkit counts at Moderate (h > 25, occ <= 1, trunc <= 0.3; the 2019 devkit ignores h <= 25)."""
    n = 0
    for f in label_dir.glob("*.txt"):
        df = kitti.read_label(f)
        n += int(((df["type"] == "Car") & (df["bottom"] - df["top"] > 25) & (df["occluded"] <= 1)
                  & (df["truncated"] <= 0.3)).sum())
    return n


@pytest.mark.slow
def test_every_variant_is_trained_and_evaluated_on_real_val(pipeline_repo):
    repo = pipeline_repo
    params = _params(repo)
    assert set(params["variants"]) == VARIANTS
    val = repo / "data" / "real_val"
    val_frames = pd.read_csv(val / "frames.csv", dtype={"image_id": str})
    real = pd.read_csv(repo / "data" / "ingest" / "real_frames.csv", dtype={"image_id": str})
    assert sorted(val_frames["image_id"]) == sorted(real.loc[real["split"] == "val", "image_id"])
    n_mod = _moderate_cars(val / "kitti_labels")
    assert n_mod > 0
    for v in VARIANTS:
        assert (repo / "data" / "train" / v / "weights" / "best.pt").is_file(), v
        curve = pd.read_csv(repo / "reports" / "train" / f"{v}.csv")
        assert list(curve["epoch"]) == list(range(1, params["train"]["epochs"] + 1))
        m = json.loads((repo / "reports" / "metrics" / f"{v}.json").read_text())
        car = m["kitti"]["Car"]
        assert car["n_gt_moderate"] == n_mod, v
        for k in AP_KEYS:
            assert car[k] is not None and math.isfinite(car[k]) and 0 <= car[k] <= 100, (v, k, car[k])
        for k in ("mAP50", "mAP50-95"):
            assert math.isfinite(m[k]["all"]) and 0 <= m[k]["all"] <= 1, (v, k)
            assert "Car" in m[k]
        dets = sorted(p.stem for p in (repo / "data" / "eval" / v / "detections").glob("*.txt"))
        assert dets == sorted(val_frames["image_id"]), v
        # the train set is the variant's frames, images hard-linked
        src = repo / params["variants"][v]["data"]
        built = pd.read_csv(repo / "data" / "datasets" / v / "frames.csv", dtype={"frame_id": str})
        assert sorted(built["frame_id"]) == sorted(pd.read_csv(src / "frames.csv", dtype={"frame_id": str})["frame_id"])
    # the mix draws from every source, each base frame once (fraction = 1 / len(sources))
    mix = pd.read_csv(repo / "data" / "mix" / "frames.csv", dtype={"base_frame_id": str})
    if math.isclose(params["mix"]["fraction"] * len(params["mix"]["sources"]), 1.0):
        assert not mix["base_frame_id"].duplicated().any()
    assert mix["source"].nunique() == len(params["mix"]["sources"])


@pytest.mark.slow
def test_no_ultralytics_cache_in_outputs_and_repro_is_a_noop(pipeline_repo):
    repo = pipeline_repo
    assert not list((repo / "data").rglob("*.cache"))
    status = dvc(repo, "status", "--json")
    assert json.loads(status.stdout or "{}") == {}, status.stdout
    again = dvc(repo, "repro")
    assert "Running stage" not in again.stdout, again.stdout


@pytest.mark.slow
def test_blur_experiment_reruns_only_depth_blur_and_mix(pipeline_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(pipeline_repo, repo, symlinks=True)
    run(["git", "add", "-A"], cwd=repo)
    run(["git", "commit", "-q", "-m", "pipeline ran"], cwd=repo)
    sigma = _params(repo)["blur"]["sigma"]
    new = 3 if sigma != 3 else 1.5
    # target the evaluate@ group: its whole upstream is checked, downstream reports are left out
    out = dvc(repo, "exp", "run", "-S", f"blur.sigma={new}", "evaluate").stdout
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    for v in ("depth_blur", "mix"):
        assert {f"train@{v}", f"evaluate@{v}", f"build_dataset@{v}"} <= ran, (v, sorted(ran))
    assert "depth_blur" in ran and "build_mix" in ran
    for v in ("baseline", "style", "cyclegan"):
        assert not any(s.endswith(f"@{v}") for s in ran), (v, sorted(ran))
    assert "build_val" not in ran
