"""The detection stages inside the real `dvc repro` of the miniature world (session fixture
``pipeline_repo``): every (variant, seed) trained and evaluated, the oracle trained on the real train
split only, the negative control on the baseline's data with another seed, no ultralytics cache
inside outputs, a second repro is a no-op, more seeds add runs without rerunning any, and a blur
experiment reruns only its own chain."""
from __future__ import annotations

import hashlib
import json
import math
import re
import shutil

import pandas as pd
import pytest
import yaml

from conftest import dvc, run
from sim2real.formats import kitti

VARIANTS = {"baseline", "depth_blur", "style", "cyclegan", "mix", "calibrated", "real", "control"}
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
def test_every_variant_and_seed_is_trained_and_evaluated_on_real_val(pipeline_repo):
    repo = pipeline_repo
    params = _params(repo)
    assert set(params["variants"]) == VARIANTS
    seeds = params["train"]["seeds"]
    val = repo / "data" / "real_val"
    val_frames = pd.read_csv(val / "frames.csv", dtype={"image_id": str})
    real = pd.read_csv(repo / "data" / "ingest" / "real_frames.csv", dtype={"image_id": str})
    assert sorted(val_frames["image_id"]) == sorted(real.loc[real["split"] == "val", "image_id"])
    n_mod = _moderate_cars(val / "kitti_labels")
    assert n_mod > 0
    for v in VARIANTS:
        for s in seeds:
            run = repo / "data" / "train" / v / f"seed{s}"
            assert (run / "weights" / "best.pt").is_file(), (v, s)
            curve = pd.read_csv(repo / "reports" / "train" / v / f"seed{s}.csv")
            assert list(curve["epoch"]) == list(range(1, params["train"]["epochs"] + 1))
            ev = repo / "data" / "eval" / v / f"seed{s}"
            dets = sorted(p.stem for p in (ev / "detections").glob("*.txt"))
            assert dets == sorted(val_frames["image_id"]), (v, s)
            u = json.loads((ev / "ultralytics.json").read_text())
            assert 0 <= u["mAP50"]["all"] <= 1 and u["val_images"] == len(val_frames)
        m = json.loads((repo / "reports" / "metrics" / f"{v}.json").read_text())
        for k in ("easy", "moderate", "hard"):
            ap = m["kitti"]["Car"][k]
            assert ap is not None and math.isfinite(ap) and 0 <= ap <= 100, (v, k, ap)
        assert math.isfinite(m["mAP50"]["all"]) and 0 <= m["mAP50"]["all"] <= 1
        # the train set is the variant's frames, images hard-linked
        src = repo / params["variants"][v]["data"]
        built = pd.read_csv(repo / "data" / "datasets" / v / "frames.csv", dtype={"frame_id": str})
        assert sorted(built["frame_id"]) == sorted(pd.read_csv(src / "frames.csv", dtype={"frame_id": str})["frame_id"])
    # the mix draws from every source, each base frame once (fraction = 1 / len(sources))
    mix = pd.read_csv(repo / "data" / "mix" / "frames.csv", dtype={"base_frame_id": str})
    if math.isclose(params["mix"]["fraction"] * len(params["mix"]["sources"]), 1.0):
        assert not mix["base_frame_id"].duplicated().any()
    assert mix["source"].nunique() == len(params["mix"]["sources"])


def _digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_the_oracle_trains_on_the_real_train_split_and_never_sees_a_val_image(pipeline_repo):
    repo = pipeline_repo
    real = pd.read_csv(repo / "data" / "ingest" / "real_frames.csv", dtype={"image_id": str})
    train_ids = set(real.loc[real["split"] == "train", "image_id"])
    val_ids = set(real.loc[real["split"] == "val", "image_id"])
    assert train_ids and val_ids and not train_ids & val_ids
    built = pd.read_csv(repo / "data" / "datasets" / "real" / "frames.csv", dtype={"frame_id": str})
    assert set(built["frame_id"]) == train_ids
    # by content, not only by name: no training image of the oracle is a val image
    train_px = set(_digests(repo / "data" / "datasets" / "real" / "images").values())
    val_px = set(_digests(repo / "data" / "real_val" / "images").values())
    assert len(train_px) == len(train_ids) and not train_px & val_px
    labels = sorted(p.stem for p in (repo / "data" / "datasets" / "real" / "labels").glob("*.txt"))
    assert labels == sorted(train_ids)
    # train@real-<s> reads exactly that folder (plus real_val, which ultralytics only validates on)
    stage = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["train"]
    assert "--data data/datasets/${item.variant}" in " ".join(stage["cmd"].split())


@pytest.mark.slow
def test_the_negative_control_is_the_baseline_data_with_other_seeds(pipeline_repo):
    repo = pipeline_repo
    params = _params(repo)
    offset = params["variants"]["control"]["seed_offset"]
    assert offset != 0
    for s in params["train"]["seeds"]:
        base = yaml.safe_load((repo / "data" / "train" / "baseline" / f"seed{s}" / "args.yaml").read_text())
        ctrl = yaml.safe_load((repo / "data" / "train" / "control" / f"seed{s}" / "args.yaml").read_text())
        assert (base["seed"], ctrl["seed"]) == (s, s + offset)
        assert {k: v for k, v in base.items() if k not in ("seed", "name", "save_dir", "data", "project")} == \
            {k: v for k, v in ctrl.items() if k not in ("seed", "name", "save_dir", "data", "project")}
    frames = lambda v: pd.read_csv(repo / "data" / "datasets" / v / "frames.csv", dtype={"frame_id": str})
    assert frames("control")["frame_id"].tolist() == frames("baseline")["frame_id"].tolist()
    assert _digests(repo / "data" / "datasets" / "control" / "images") == \
        _digests(repo / "data" / "datasets" / "baseline" / "images")


@pytest.mark.slow
def test_no_ultralytics_cache_in_outputs_and_repro_is_a_noop(pipeline_repo):
    repo = pipeline_repo
    assert not list((repo / "data").rglob("*.cache"))
    status = dvc(repo, "status", "--json")
    assert json.loads(status.stdout or "{}") == {}, status.stdout
    again = dvc(repo, "repro")
    assert "Running stage" not in again.stdout, again.stdout


def _copy(pipeline_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(pipeline_repo, repo, symlinks=True)
    run(["git", "add", "-A"], cwd=repo)
    run(["git", "commit", "-q", "-m", "pipeline ran"], cwd=repo)
    return repo


@pytest.mark.slow
def test_another_seed_adds_runs_and_reruns_none(pipeline_repo, tmp_path):
    repo = _copy(pipeline_repo, tmp_path)
    params = _params(repo)
    old = params["train"]["seeds"]
    new = max(old) + 1
    params["train"]["seeds"] = [*old, new]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # what `dvc repro` would run: the new runs only (the scores follow once their evaluations exist;
    # `report` shows params.yaml itself, so any params edit makes it stale)
    # score@<v> reads train.seeds and every seed folder of its variant, baseline and real: each rescoring
    stale = set(json.loads(dvc(repo, "status", "--json").stdout or "{}")) - {"report"}
    runs = {f"{kind}@{v}-{new}" for kind in ("train", "evaluate") for v in VARIANTS}
    assert stale == runs | {f"score@{v}" for v in VARIANTS}, sorted(stale)
    assert not {f"{kind}@{v}-{s}" for kind in ("train", "evaluate") for v in VARIANTS for s in old} & stale


@pytest.mark.slow
def test_blur_experiment_reruns_only_depth_blur_and_mix(pipeline_repo, tmp_path):
    repo = _copy(pipeline_repo, tmp_path)
    sigma = _params(repo)["blur"]["sigma"]
    new = 3 if sigma != 3 else 1.5
    seeds = _params(repo)["train"]["seeds"]
    # targets: every variant dataset (their whole upstream is checked) and depth_blur's first run
    # trained and evaluated for real; the other training runs are judged by DVC's own staleness
    out = dvc(repo, "exp", "run", "-S", f"blur.sigma={new}", "build_dataset", f"evaluate@depth_blur-{seeds[0]}").stdout
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    # calibrate reads blur.* (its "before" statistics; the calibrated variant inherits the keys it
    # does not fit), so the calibrated chain is a blur dependant too
    blurred = ("depth_blur", "mix", "calibrated")
    for v in blurred:
        assert f"build_dataset@{v}" in ran, (v, sorted(ran))
    assert {f"train@depth_blur-{seeds[0]}", f"evaluate@depth_blur-{seeds[0]}"} <= ran, sorted(ran)
    assert "depth_blur" in ran and "build_mix" in ran
    for v in VARIANTS - set(blurred):
        assert not any(re.search(rf"@{v}(-\d+)?$", s) for s in ran), (v, sorted(ran))
    # `dvc status` lists the stages whose own dependencies changed: the blurred variants' training
    # runs (their evaluate@ follow from them in the DAG), and no run of any other variant
    stale = set(json.loads(dvc(repo, "status", "--json").stdout or "{}"))
    runs = {f"{kind}@{v}-{s}" for kind in ("train", "evaluate") for v in blurred for s in seeds}
    assert {f"train@{v}-{s}" for v in blurred for s in seeds} - {f"train@depth_blur-{seeds[0]}"} <= stale, sorted(stale)
    assert {s for s in stale if s.startswith(("train@", "evaluate@"))} <= runs, sorted(stale)
    assert "build_val" not in ran and "build_real_train" not in ran
