"""sim2real.detect: datasets (linking, mix, real-KITTI conversion), offline settings, training args,
KITTI result writing, and one tiny real train + evaluate through the stage entry points."""
from __future__ import annotations

import json
import shutil
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from detect_fixtures import H, W, kitti_rows, make_real, make_variant
from sim2real.detect import datasets, offline
from sim2real.detect.predict import detections_frame
from sim2real.detect.train import DetectTrainConfig, resolve_weights, results_table, train_args
from sim2real.io import link_or_copy
from sim2real.errors import ConfigError, DataError
from sim2real.formats import kitti, yolo
from sim2real.params import build, validate_section

ROOT = Path(__file__).resolve().parents[2]


def test_build_train_set_links_images_and_copies_labels(tmp_path):
    src = make_variant(tmp_path / "aug", "depth_blur", n=4)
    out = tmp_path / "ds"
    table = datasets.build_train_set([src], out, n_classes=3, roots=[tmp_path])
    assert len(table) == 4 and (table["n_boxes"] == 2).all()
    frames = pd.read_csv(src / "frames.csv")
    for fid, img in zip(frames["frame_id"], frames["image"]):
        linked = out / "images" / f"{fid}.jpg"
        assert os.stat(linked).st_ino == os.stat(img).st_ino  # a hard link, not a copy
        assert (out / "labels" / f"{fid}.txt").read_text() == (src / "labels" / f"{fid}.txt").read_text()
    assert (out / "frames.csv").is_file()


def test_link_falls_back_to_copy(tmp_path, monkeypatch):
    import errno
    src = tmp_path / "a.jpg"
    src.write_bytes(b"x" * 10)

    def no_link(a, b):
        raise OSError(errno.EXDEV, "cross-device link")
    monkeypatch.setattr(os, "link", no_link)
    assert link_or_copy(src, tmp_path / "b" / "a.jpg") == "copy"
    assert (tmp_path / "b" / "a.jpg").read_bytes() == b"x" * 10


def test_build_train_set_rejects_bad_class_and_missing_image(tmp_path):
    src = make_variant(tmp_path / "aug", "v", n=2)
    lab = sorted((src / "labels").glob("*.txt"))[0]
    lab.write_text("5 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match=r"class id 5 outside 0..2"):
        datasets.build_train_set([src], tmp_path / "o1", n_classes=3, roots=[tmp_path])
    src2 = make_variant(tmp_path / "aug2", "v", n=2)
    next((src2 / "images").glob("*.jpg")).unlink()
    with pytest.raises(DataError, match="not found"):
        datasets.build_train_set([src2], tmp_path / "o2", n_classes=3, roots=[tmp_path])
    (src2 / "frames.csv").write_text("frame_id,image\nx,y\n")
    with pytest.raises(DataError, match="missing column"):
        datasets.build_train_set([src2], tmp_path / "o3", n_classes=3, roots=[tmp_path])


def test_paths_relative_to_the_dataset_folder_are_resolved(tmp_path):
    src = make_variant(tmp_path / "aug", "rel", n=2, relative_to=tmp_path / "aug" / "rel")
    table = datasets.build_train_set([src], tmp_path / "o", n_classes=3, roots=[tmp_path])
    assert len(table) == 2


@pytest.mark.parametrize("n_sources", [2, 4])
def test_mix_selection_partitions_frames_at_one_over_n(n_sources):
    ids = [f"f{i}" for i in range(400)]
    masks = np.stack([datasets.mix_selection(ids, k, 1 / n_sources, seed=3) for k in range(n_sources)])
    assert (masks.sum(axis=0) == 1).all()          # every frame exactly once
    assert (masks.sum(axis=1) > 400 / n_sources * 0.7).all()  # roughly balanced
    everything = np.stack([datasets.mix_selection(ids, k, 1.0, seed=3) for k in range(n_sources)])
    assert everything.all()
    # deterministic, and the seed matters
    assert np.array_equal(datasets.mix_selection(ids, 0, 1 / n_sources, 3), masks[0])
    assert not (datasets.mix_selection(ids, 0, 0.5, 4) == datasets.mix_selection(ids, 0, 0.5, 3)).all()
    with pytest.raises(ConfigError, match="mix.fraction"):
        datasets.mix_selection(ids, 0, 0.0, 3)


def test_build_mix_writes_a_variant_dataset(tmp_path):
    a = make_variant(tmp_path / "aug", "a", n=10, seed=1)
    b = make_variant(tmp_path / "aug", "b", n=10, seed=2)
    table = datasets.build_mix([a, b], tmp_path / "tmpmix", fraction=0.5, seed=0, final_dir=tmp_path / "mix",
                               roots=[tmp_path])
    assert len(table) == 10                               # a partition of the 10 base frames
    assert sorted(table["base_frame_id"]) == sorted(pd.read_csv(a / "frames.csv")["frame_id"])
    assert set(table["source"]) <= {"a", "b"}
    assert table["image"].str.startswith(str(tmp_path / "mix")).all()
    (tmp_path / "tmpmix").rename(tmp_path / "mix")
    # the mix is itself a valid variant dataset
    assert len(datasets.build_train_set([tmp_path / "mix"], tmp_path / "ds", n_classes=3, roots=[tmp_path])) == 10


def test_kitti_to_yolo_class_map_drops_others_and_clips():
    df = kitti_rows([(10, 10, 50, 40), (0, 0, 20, 20), (300, 50, 340, 90), (5, 5, 15, 30)],
                    ["Car", "DontCare", "Truck", "Pedestrian"])
    ids, boxes = datasets.kitti_to_yolo(df, ["Car", "Van", "Truck"], W, H)
    assert ids == [0, 2]
    assert boxes[0] == pytest.approx([30 / W, 25 / H, 40 / W, 30 / H])
    # the truck is clipped to the image's right edge (x 300..320)
    assert boxes[1] == pytest.approx([310 / W, 70 / H, 20 / W, 40 / H])


def test_build_real_val_keeps_kitti_labels_and_converts(tmp_path):
    csv = make_real(tmp_path / "kitti", n=3)
    out = tmp_path / "val"
    table = datasets.build_real_val(csv, out, ["Car", "Van", "Truck"], roots=[tmp_path])
    assert len(table) == 3                                  # the split == train frame is left out
    for iid in table["image_id"]:
        original = kitti.read_label(tmp_path / "kitti" / "training" / "label_2" / f"{iid}.txt")
        kept = kitti.read_label(out / "kitti_labels" / f"{iid}.txt")
        assert (kept["type"] == "DontCare").sum() == 1 and len(kept) == len(original)
        y = yolo.read_labels(out / "labels" / f"{iid}.txt")
        assert sorted(y["cls"]) == [0, 1]                   # Car, Van; DontCare and Pedestrian dropped
    with pytest.raises(DataError, match="split == 'test'"):
        datasets.build_real_val(csv, tmp_path / "v2", ["Car"], split="test", roots=[tmp_path])
    assert not (out / "calib").exists()                     # the manifest has no calib files
    # with calib files, each val image's P2 comes along (the study's distance estimate)
    frames = pd.read_csv(csv, dtype={"image_id": str})
    for iid in frames["image_id"]:
        kitti.write_calib(tmp_path / "kitti" / "calib" / f"{iid}.txt", {"P2": np.eye(3, 4) * (int(iid) + 1)})
    frames["calib"] = [str(tmp_path / "kitti" / "calib" / f"{iid}.txt") for iid in frames["image_id"]]
    frames.to_csv(csv, index=False)
    datasets.build_real_val(csv, tmp_path / "v3", ["Car"], roots=[tmp_path])
    for iid in table["image_id"]:
        assert kitti.read_calib(tmp_path / "v3" / "calib" / f"{iid}.txt")["P2"][0, 0] == int(iid) + 1


def test_real_train_split_is_a_variant_dataset_without_val_images(tmp_path):
    csv = make_real(tmp_path / "kitti", n=3)                # frames 0..2 val, frame 3 train
    out = tmp_path / "real_train"
    table = datasets.build_real_val(csv, out, ["Car", "Van", "Truck"], split="train", roots=[tmp_path])
    assert table["frame_id"].tolist() == ["000003"]
    assert sorted(p.stem for p in (out / "images").iterdir()) == ["000003"]
    # it passes the variant-dataset contract, so build_dataset@real links it like any variant
    built = datasets.build_train_set([out], tmp_path / "ds", n_classes=3, roots=[tmp_path])
    assert built["frame_id"].tolist() == ["000003"] and built["n_boxes"].tolist() == [2]


def test_variant_seed_offset():
    variants = {"baseline": {"data": "d"}, "control": {"data": "d", "seed_offset": 1000}}
    assert datasets.variant_seed_offset(variants, "baseline") == 0
    assert datasets.variant_seed_offset(variants, "control") == 1000
    with pytest.raises(ConfigError, match="variants has no 'x'"):
        datasets.variant_seed_offset(variants, "x")
    with pytest.raises(ConfigError, match="variants.control.seed_offset"):
        datasets.variant_seed_offset({"control": {"data": "d", "seed_offset": "1"}}, "control")


def test_train_seeds_and_the_train_stage_params_in_dvc_yaml():
    train = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
    assert build(DetectTrainConfig, {**train, "seeds": [0, 1, 2]}, seed=0).seeds == (0, 1, 2)
    for bad in ([], [0.5], 3, [1, 1]):
        with pytest.raises(ConfigError, match="train.seeds"):
            validate_section("train", {**train, "seeds": bad})
    # train@ lists every DetectTrainConfig key but the seeds (a new seed adds runs and reruns none)
    import dataclasses
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]
    listed = {p.split(".", 1)[1] for p in stage["params"] if isinstance(p, str) and p.startswith("train.")}
    assert listed == {f.name for f in dataclasses.fields(DetectTrainConfig)} - {"seed", "seeds"}
    assert set(yaml.safe_load((ROOT / "params.yaml").read_text())["train"]) == listed | {"seeds"}
    assert stage["matrix"] == {"variant": "${variants}", "seed": "${train.seeds}"}


def test_ultralytics_view_keeps_caches_outside_the_dataset(tmp_path):
    src = make_variant(tmp_path / "aug", "v", n=3)
    ds = tmp_path / "ds"
    datasets.build_train_set([src], ds, n_classes=3, roots=[tmp_path])
    val = tmp_path / "val"
    datasets.build_real_val(make_real(tmp_path / "kitti", n=2), val, ["Car", "Van", "Truck"], roots=[tmp_path])
    scratch = tmp_path / "scratch"
    data_yaml = datasets.stage_for_ultralytics(scratch, ds, val, ["Car", "Van", "Truck"])
    data = yaml.safe_load(data_yaml.read_text())
    assert data["names"] == {0: "Car", 1: "Van", 2: "Truck"}
    train_imgs = sorted((scratch / "images" / "train").iterdir())
    assert len(train_imgs) == 3 and all(p.is_symlink() for p in train_imgs)
    assert (scratch / "labels" / "val").is_dir() and not (scratch / "labels" / "val").is_symlink()


def test_train_config_validates_params():
    train = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
    cfg = build(DetectTrainConfig, {**train, "model": "yolov5l-p6.yaml", "imgsz": 1280, "device": "0", "amp": True})
    args = train_args(cfg, Path("/x/data.yaml"), Path("/x/run"))
    assert args["amp"] is True and args["imgsz"] == 1280 and args["plots"] is False
    cpu = build(DetectTrainConfig, {**train, "device": "cpu", "amp": True})
    assert train_args(cpu, Path("d.yaml"), Path("/x/run"))["amp"] is False   # never AMP on CPU
    with pytest.raises(ConfigError, match="train.nope"):
        validate_section("train", {**train, "nope": 1})
    with pytest.raises(ConfigError, match="model yaml"):
        validate_section("train", {**train, "model": "yolov5l6.pt"})
    with pytest.raises(ConfigError, match="model yaml"):
        DetectTrainConfig(model="yolov5l6.pt")


def test_resolve_weights_local_cache_and_clear_error(tmp_path, monkeypatch):
    assert resolve_weights(None, tmp_path, False) is None
    (tmp_path / "cache").mkdir()
    w = tmp_path / "cache" / "w.pt"
    w.write_bytes(b"0")
    assert resolve_weights(str(w), tmp_path / "cache", False) == w   # a path inside weights_dir
    (tmp_path / "cache" / "yolov5lu.pt").write_bytes(b"0")
    assert resolve_weights("yolov5lu.pt", tmp_path / "cache", False) == tmp_path / "cache" / "yolov5lu.pt"
    with pytest.raises(ConfigError, match="train.weights='yolo11x.pt'.*train.download"):
        resolve_weights("yolo11x.pt", tmp_path / "cache", False)


def test_albumentations_guard(monkeypatch):
    offline.assert_no_albumentations()                    # not installed here
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n: object() if n == "albumentations" else real(n))
    with pytest.raises(RuntimeError, match="albumentations"):
        offline.assert_no_albumentations()


def test_offline_settings_are_explicit_in_a_subprocess(tmp_path):
    code = ("import json, os, sys; from sim2real.detect import offline; v = offline.configure(sys.argv[1]);"
            "from ultralytics.utils import SETTINGS, is_online; import ultralytics.data.utils as du;"
            "print(json.dumps({'file': str(SETTINGS.file), 's': dict(SETTINGS), 'online': is_online(),"
            "'font': str(du.check_font('Arial.ttf')), 'off': os.environ['YOLO_OFFLINE']}))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True,
                         check=True, env=env, cwd=ROOT)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["file"].startswith(str((tmp_path / "run").resolve()))
    assert Path(res["file"]).is_file()
    s = res["s"]
    assert s["sync"] is False and all(s[k] is False for k in offline.INTEGRATIONS)
    assert s["runs_dir"].startswith(str((tmp_path / "run").resolve()))
    assert res["online"] is False and res["off"] == "true"
    assert res["font"].endswith("DejaVuSans.ttf") and Path(res["font"]).is_file()


def test_detections_roundtrip_as_kitti_results(tmp_path):
    df = detections_frame(np.array([[1.5, 2.25, 30.0, 40.0]]), np.array([2.0]), np.array([0.87654]),
                          {0: "Car", 1: "Van", 2: "Truck"})
    kitti.write_label(tmp_path / "000001.txt", df)
    back = kitti.read_label(tmp_path / "000001.txt")
    assert back["type"].tolist() == ["Truck"]
    assert back[["left", "top", "right", "bottom"]].to_numpy()[0] == pytest.approx([1.5, 2.25, 30.0, 40.0], abs=0.01)
    assert back["score"].iloc[0] == pytest.approx(0.8765, abs=1e-4)


def test_results_table_strips_and_drops_time(tmp_path):
    (tmp_path / "r.csv").write_text("  epoch,  time, train/box_loss\n1, 3.2, 0.5\n")
    t = results_table(tmp_path / "r.csv")
    assert list(t.columns) == ["epoch", "train/box_loss"]


@pytest.mark.slow
def test_tiny_train_and_evaluate_through_the_stages(tmp_path):
    """A real 1-epoch ultralytics run at 64 px through stages.train, stages.evaluate and stages.score."""
    make_variant(tmp_path / "data" / "aug", "v", n=8)
    csv = make_real(tmp_path / "data" / "kitti", n=4, calib=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(imgsz=64, epochs=1, batch=8)
    params["study"]["camera_height_m"] = 1.65  # the hand-made val labels carry no 3D location to estimate it
    params["train"]["seeds"] = [2]  # the run below is seed 2; score reads the seeds from params
    params["variants"] = {"v": {"data": "data/aug/v", "images": "data/aug/v", "seed_offset": 5}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", "SIM2REAL_NO_PROGRESS": "1",
           "SIM2REAL_WANDB_ROOT": str(tmp_path)}

    def stage(*args):
        return subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, env=env, capture_output=True, text=True)
    for args in (("stages.build_dataset", "variant", "--name", "v", "--src", "data/aug/v", "--out", "data/datasets/v"),
                 ("stages.build_dataset", "val", "--real-frames", str(csv), "--out", "data/real_val"),
                 ("stages.train", "--variant", "v", "--seed", "2", "--data", "data/datasets/v", "--val",
                  "data/real_val", "--out", "data/train/v/seed2", "--plots", "reports/train/v/seed2.csv"),
                 ("stages.evaluate", "--variant", "v-seed2", "--weights", "data/train/v/seed2/weights/best.pt",
                  "--val", "data/real_val", "--out", "data/eval/v/seed2"),
                 ("stages.score", "--variant", "v", "--eval", "data/eval", "--val", "data/real_val",
                  "--out", "reports/metrics/v.json")):
        if args[0] == "stages.score":  # the references: this run stands in for baseline and oracle (no gap)
            for ref in ("baseline", "real"):
                shutil.copytree(tmp_path / "data/eval/v", tmp_path / "data/eval" / ref)
        r = stage(*args)
        assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "data/train/v/seed2"
    assert (run / "weights/best.pt").is_file() and not (run / "weights/last.pt").exists()
    assert yaml.safe_load((run / "args.yaml").read_text())["seed"] == 7   # seed 2 + the variant's seed_offset 5
    assert not list((tmp_path / "data").rglob("*.cache"))       # ultralytics caches stayed in scratch
    plots = pd.read_csv(tmp_path / "reports/train/v/seed2.csv")
    assert list(plots["epoch"]) == [1] and "metrics/mAP50(B)" in plots.columns
    u = json.loads((tmp_path / "data/eval/v/seed2/ultralytics.json").read_text())
    assert u["val_images"] == 4 and np.isfinite(u["mAP50"]["all"])
    assert sorted(p.name for p in (tmp_path / "data/eval/v/seed2").iterdir()) == ["detections", "ultralytics.json"]
    dets = sorted(p.name for p in (tmp_path / "data/eval/v/seed2/detections").iterdir())
    assert dets == [f"{i:06d}.txt" for i in range(4)]
    m = json.loads((tmp_path / "reports/metrics/v.json").read_text())
    assert m["seeds"]["values"] == [2] and np.isfinite(m["kitti"]["Car"]["moderate"])
    g = m["gap_closure"]["kitti_car_moderate"]
    assert g["value"] is None and g["reason"]  # the references are this very run: no measurable gap
    # one offline W&B run per stage for this run
    from sim2real.tracking import read_offline_run
    runs = {read_offline_run(r)["name"]: read_offline_run(r) for r in (tmp_path / "wandb").glob("offline-run-*")}
    assert sorted(runs) == ["evaluate-v-seed2", "train-v-seed2"]
    assert len(runs["train-v-seed2"]["history"]) == 1 and "mAP50/all" in runs["evaluate-v-seed2"]["summary"]
    # a missing weights file is one clear line
    r = stage("stages.evaluate", "--variant", "v", "--weights", "nope.pt", "--val", "data/real_val",
              "--out", "data/eval/x")
    assert r.returncode == 1 and "nope.pt: trained weights not found" in r.stderr
