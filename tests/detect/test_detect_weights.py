"""Pretrained and user-supplied YOLO checkpoints: ``train.weights`` really initialises the trained
model, the weights file is a DVC dependency of ``train@<v>``, original yolov5 files get a clear
error, and no checkpoint (or model yaml) can run code when loaded."""
from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import dvc, make_repo
from detect_fixtures import make_official_checkpoint, make_real, make_variant
from sim2real.detect import datasets, offline
from sim2real.detect.checkpoint import check_checkpoint
from sim2real.detect.train import DetectTrainConfig, pretrained_weights, resolve_weights, train
from sim2real.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["Car", "Van", "Truck"]


class Stop(Exception):
    """Raised from a trainer callback once the model is captured (no need to train)."""


def evil_payload(marker: Path):
    """An object whose unpickling creates ``marker`` (exec of a one-line program)."""
    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('pwned')",))
    return Payload()


def evil_checkpoint(path: Path, marker: Path) -> Path:
    """A torch.save zip whose unpickling would create ``marker``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": evil_payload(marker), "train_args": {"imgsz": 64}}, path)
    return path


def yolov5_checkpoint(path: Path, monkeypatch) -> Path:
    """A file laid out like an original ultralytics/yolov5 release (classes of its ``models.yolo``)."""
    pkg, mod = types.ModuleType("models"), types.ModuleType("models.yolo")
    DetectionModel = type("DetectionModel", (torch.nn.Module,), {"__module__": "models.yolo"})
    mod.DetectionModel = DetectionModel
    monkeypatch.setitem(sys.modules, "models", pkg)
    monkeypatch.setitem(sys.modules, "models.yolo", mod)
    m = DetectionModel()
    m.conv = torch.nn.Conv2d(3, 4, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": -1, "model": m.half(), "opt": {"imgsz": 1280}}, path)
    monkeypatch.delitem(sys.modules, "models.yolo")
    monkeypatch.delitem(sys.modules, "models")
    return path


@pytest.fixture
def configured(tmp_path):
    offline.configure(tmp_path / "uconf")
    return tmp_path


def tiny_data_yaml(tmp_path: Path, scratch: Path) -> Path:
    """A 4-frame training set and a 2-frame val set under ``tmp_path`` (built once), staged for
    ultralytics in ``scratch``; returns its data.yaml."""
    ds, val = tmp_path / "ds", tmp_path / "val"
    if not ds.exists():
        datasets.build_train_set([make_variant(tmp_path / "aug", "v", n=4)], ds, n_classes=3, roots=[tmp_path])
        datasets.build_real_val(make_real(tmp_path / "kitti", n=2), val, CLASSES, roots=[tmp_path])
    return datasets.stage_for_ultralytics(scratch, ds, val, CLASSES)


def first_state(cfg: DetectTrainConfig, tmp_path: Path) -> dict[str, torch.Tensor]:
    """The trainer's model parameters right after ultralytics set it up (before any step)."""
    scratch = tmp_path / f"scratch-{cfg.weights}"
    data_yaml = tiny_data_yaml(tmp_path, scratch)
    got = {}

    def capture(trainer):
        got.update({k: v.detach().float().clone() for k, v in trainer.model.named_parameters()})
        raise Stop

    with pytest.raises(Stop):
        train(cfg, data_yaml, tmp_path / f"run-{cfg.weights}", scratch, callbacks={"on_pretrain_routine_end": capture})
    return got


def test_pretrained_weights_reach_the_trained_model(configured):
    tmp_path = configured
    ckpt_path = make_official_checkpoint(tmp_path / "weights" / "yolov5n6u.pt")
    ckpt = torch.load(ckpt_path, weights_only=False)  # the test's own file
    official = {k: v.float() for k, v in ckpt["model"].state_dict().items()}
    base = dict(model="yolov5n-p6.yaml", weights_dir=str(tmp_path / "weights"), imgsz=64, epochs=1, batch=4)
    tuned = first_state(DetectTrainConfig(weights="yolov5n6u.pt", **base), tmp_path)
    scratch = first_state(DetectTrainConfig(weights=None, **base), tmp_path)
    same_shape = [k for k, v in tuned.items() if k in official and official[k].shape == v.shape]
    equal = [k for k in same_shape if torch.equal(tuned[k], official[k])]
    head = max(int(k.split(".")[1]) for k in tuned)  # the Detect layer's index
    backbone = [k for k in tuned if int(k.split(".")[1]) < head]
    assert set(backbone) <= set(equal)                                    # backbone and neck: the checkpoint's
    assert equal == same_shape and len(equal) > 0.9 * len(tuned)          # everything with a matching shape
    cls_convs = {f"model.{head}.cv3.{i}.2.{w}" for i in range(4) for w in ("weight", "bias")}
    assert set(tuned) - set(equal) == cls_convs      # only the last class conv per level (P3-P6): nc 80 -> 3
    assert not [k for k in same_shape if torch.equal(scratch[k], official[k])]  # from scratch: none of it


def test_torch_threads_reach_the_training_loop(configured):
    """ultralytics' device selection resets torch to ``cpu_count - 1`` threads (1 on 2 cores);
    ``compute.torch_threads`` is what torch uses once the epochs run, and in val/predict."""
    from ultralytics.utils import NUM_THREADS
    from ultralytics.utils.torch_utils import select_device

    tmp_path = configured
    wanted = NUM_THREADS + 1                       # never ultralytics' own choice
    data_yaml = tiny_data_yaml(tmp_path, tmp_path / "scratch")
    seen = []

    def capture(trainer):
        seen.append(torch.get_num_threads())
        raise Stop

    before = torch.get_num_threads()
    try:
        with pytest.raises(Stop):
            train(DetectTrainConfig(model="yolov5n-p6.yaml", imgsz=64, epochs=1, batch=4), data_yaml,
                  tmp_path / "run", tmp_path / "scratch", callbacks={"on_train_epoch_start": capture},
                  torch_threads=wanted)
        assert seen == [wanted]
        torch.set_num_threads(1)
        select_device("cpu", verbose=False)        # what ultralytics' validator and predictor call
        assert torch.get_num_threads() == wanted
    finally:
        offline.set_torch_threads(NUM_THREADS)
        torch.set_num_threads(before)


@pytest.mark.parametrize("val", [False, True])
def test_train_val_false_makes_no_val_pass_and_strips_best(configured, val):
    """``train.val: false``: no pass over val inside training (evaluate@ scores the weights);
    ``best.pt`` is still the finished, optimizer-free checkpoint. ``true``: ultralytics validates."""
    import pandas as pd

    tmp_path = configured
    data_yaml = tiny_data_yaml(tmp_path, tmp_path / "scratch")
    passes = []
    cfg = DetectTrainConfig(model="yolov5n-p6.yaml", imgsz=64, epochs=2, batch=4, val=val)
    best = train(cfg, data_yaml, tmp_path / "run", tmp_path / "scratch",
                 callbacks={"on_val_start": lambda validator: passes.append(1)})
    ckpt = torch.load(best, weights_only=False)  # the test's own run
    assert ckpt["optimizer"] is None and ckpt["epoch"] == -1 and "train_results" in ckpt
    table = pd.read_csv(tmp_path / "run" / "results.csv")
    assert len(table) == 2 and "metrics/mAP50(B)" in table.columns and "val/box_loss" in table.columns
    if val:
        assert len(passes) >= 2 and table["metrics/mAP50(B)"].notna().all()  # every epoch, then best.pt
    else:
        assert passes == [] and np.isnan(table["metrics/mAP50(B)"].iloc[-1])  # earlier epochs: ultralytics' 0


def test_weights_outside_weights_dir_are_refused(tmp_path):
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes(b"0")
    with pytest.raises(ConfigError, match=r"train.weights=.*outside train.weights_dir .*train.weights: elsewhere.pt"):
        resolve_weights(str(outside), tmp_path / "weights", False)
    with pytest.raises(ConfigError, match="outside train.weights_dir"):
        resolve_weights("../elsewhere.pt", tmp_path / "weights", False)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "a.pt").write_bytes(b"0")
    assert resolve_weights("a.pt", tmp_path / "weights", False) == tmp_path / "weights" / "a.pt"
    assert resolve_weights(str(tmp_path / "weights" / "a.pt"), tmp_path / "weights", False) == \
        tmp_path / "weights" / "a.pt"


def test_a_malicious_checkpoint_runs_nothing(configured):
    tmp_path = configured
    marker = tmp_path / "PWNED"
    evil = evil_checkpoint(tmp_path / "weights" / "evil.pt", marker)
    with pytest.raises(ConfigError) as err:
        pretrained_weights(DetectTrainConfig(weights="evil.pt", weights_dir=str(tmp_path / "weights")))
    msg = str(err.value)
    assert "\n" not in msg and str(evil) in msg and "(train.weights)" in msg and "refused" in msg
    assert "builtins.exec" in msg
    assert not marker.exists()
    # a plain pickle (not a torch zip archive) goes through the same restricted unpickler
    import pickle
    plain = tmp_path / "weights" / "plain.pt"
    plain.write_bytes(pickle.dumps({"model": evil_payload(marker)}, protocol=2))
    with pytest.raises(ConfigError, match=r"plain.pt \(train.weights\): not a loadable") as err:
        pretrained_weights(DetectTrainConfig(weights="plain.pt", weights_dir=str(tmp_path / "weights")))
    assert "\n" not in str(err.value) and not marker.exists()
    # ultralytics' own loader, as the trainer and YOLO(path) call it, is weights-only in this process too
    from ultralytics import YOLO
    with pytest.raises(Exception):
        YOLO(str(evil))
    assert not marker.exists()
    # the payload is real: ultralytics' default (unsafe) load runs it
    from ultralytics.nn.tasks import torch_safe_load
    torch_safe_load(str(evil), safe_only=False)
    assert marker.read_text() == "pwned"


def test_evaluate_refuses_a_malicious_checkpoint_in_one_line(tmp_path):
    marker = tmp_path / "PWNED"
    evil = evil_checkpoint(tmp_path / "evil.pt", marker)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", "SIM2REAL_NO_PROGRESS": "1"}
    env.pop("ULTRALYTICS_SAFE_LOAD", None)  # the stage must switch it on by itself
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    r = subprocess.run([sys.executable, "-m", "stages.evaluate", "--variant", "v", "--weights", str(evil), "--val",
                        "data/real_val", "--out", "data/eval/v"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and not marker.exists()
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {evil} (--weights): refused"), r.stderr[-2000:]
    assert not (tmp_path / "data" / "eval" / "v").exists()


def test_original_yolov5_checkpoint_names_the_u_file(configured, monkeypatch):
    tmp_path = configured
    v5 = yolov5_checkpoint(tmp_path / "weights" / "yolov5l6.pt", monkeypatch)
    # the reference: ultralytics itself refuses such a file as not forwards compatible (under a name it
    # does not rewrite: a path ending in yolov5l6.pt it swaps for yolov5l6u.pt, see below)
    from ultralytics.nn.tasks import torch_safe_load
    copy = tmp_path / "original-v5-l6.pt"
    copy.write_bytes(v5.read_bytes())
    with pytest.raises(TypeError, match="NOT forwards compatible"):
        torch_safe_load(str(copy), safe_only=False)
    with pytest.raises(ConfigError) as err:
        check_checkpoint(v5, "train.weights")
    msg = str(err.value)
    assert "\n" not in msg and str(v5) in msg and "original ultralytics/yolov5" in msg
    assert "set train.weights to" in msg and "yolov5l6u.pt" in msg
    with pytest.raises(ConfigError, match="original ultralytics/yolov5"):
        check_checkpoint(copy, "--weights")                   # recognised by content, not by name
    # a valid ultralytics file under an original yolov5 name would be swapped by ultralytics for another file
    # (ultralytics swaps only names whose whole path has no "u": relative to the folder, as a user writes it)
    make_official_checkpoint(tmp_path / "weights" / "yolov5n6.pt")
    monkeypatch.chdir(tmp_path)
    renamed = Path("weights") / "yolov5n6.pt"
    from ultralytics.utils.checks import check_yolov5u_filename
    assert check_yolov5u_filename(str(renamed), verbose=False) != str(renamed)  # the reference swaps it
    with pytest.raises(ConfigError, match=r"replaces this yolov5 file name by yolov5n6u.pt") as err:
        check_checkpoint(renamed, "train.weights")
    assert "\n" not in str(err.value) and "(train.weights)" in str(err.value)


def test_damaged_and_foreign_files_are_one_line(configured):
    tmp_path = configured
    bad = tmp_path / "weights" / "trunc.pt"
    make_official_checkpoint(bad)
    bad.write_bytes(bad.read_bytes()[:5000])
    sd = tmp_path / "weights" / "state_dict.pt"
    torch.save({"conv.weight": torch.zeros(2, 2)}, sd)
    for path, why in ((bad, "not a loadable ultralytics checkpoint"), (sd, "no 'model' or 'ema' module")):
        with pytest.raises(ConfigError, match=why) as err:
            check_checkpoint(path, "train.weights")
        assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_model_yaml_cannot_run_code(configured):
    tmp_path = configured
    marker = tmp_path / "PWNED"
    from ultralytics.utils import ROOT as UROOT
    text = (UROOT / "cfg" / "models" / "v5" / "yolov5-p6.yaml").read_text()
    evil = tmp_path / "yolov5n-p6-x.yaml"
    evil.write_text(f"activation: open({str(marker)!r}, 'w').write('pwned') or nn.SiLU()\n" + text)
    cfg = DetectTrainConfig(model=str(evil), weights=None)
    with pytest.raises(ConfigError, match=r"train.model='[^']*': unsupported activation") as err:
        train(cfg, tmp_path / "unused.yaml", tmp_path / "run", tmp_path / "scratch")
    assert "\n" not in str(err.value) and not marker.exists()


@pytest.mark.slow
def test_replacing_the_weights_file_makes_train_stale(tmp_path):
    """dvc.yaml's train@<v> depends on train.weights_dir: a new file at the same path retrains."""
    repo = make_repo(tmp_path / "repo", {"train": {"weights": "w.pt"}})
    w = repo / "weights" / "w.pt"
    w.write_bytes(b"a" * 64)
    for rel in ("data/datasets/baseline/frames.csv", "data/real_val/frames.csv",
                "data/train/baseline/seed0/results.csv", "reports/train/baseline/seed0.csv"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("epoch\n1\n")
    dvc(repo, "commit", "-f", "-q", "train@baseline-0")           # record the stage as run with these files
    assert "up to date" in dvc(repo, "status", "train@baseline-0").stdout
    tmp = repo / "weights" / "new.tmp"
    tmp.write_bytes(b"b" * 64)                                 # same size, other content, renamed into place
    os.replace(tmp, w)
    out = dvc(repo, "status", "train@baseline-0").stdout
    assert "train@baseline-0" in out and "modified:" in out and "weights" in out, out
    # a symbolic link in weights/ (the file kept on another disk): DVC hashes the target's content
    external = tmp_path / "external.pt"
    external.write_bytes(b"c" * 64)
    w.unlink()
    w.symlink_to(external)
    dvc(repo, "commit", "-f", "-q", "train@baseline-0")
    assert "up to date" in dvc(repo, "status", "train@baseline-0").stdout
    tmp = tmp_path / "new.tmp"
    tmp.write_bytes(b"d" * 64)
    os.replace(tmp, external)
    assert "modified:" in dvc(repo, "status", "train@baseline-0").stdout
