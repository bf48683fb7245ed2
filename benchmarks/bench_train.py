"""Training throughput of the pipeline's train@ path vs plain ultralytics, interleaved in one run.

Both sides train the same detector on the same images with the same settings (params.yaml
``train``, the keyword arguments of :func:`sim2real.detect.train.train_args`), each in a fresh
process, alternating (pipeline, plain, plain, pipeline, ...) so that a change in machine load
hits both:

* pipeline: ``python -m stages.train`` exactly as ``dvc repro`` runs it (params loading, the
  throw-away ultralytics view, offline settings, the trainer subclass, results table, plots CSV,
  the offline W&B run);
* plain: ``ultralytics.YOLO(model).train(data=..., **same arguments)`` on an ordinary
  ultralytics dataset folder (``Arial.ttf`` placed in its config folder so that nothing downloads),
  with the pipeline's CPU thread count (``compute.torch_threads``) set by a callback after
  ultralytics' own device selection (which would use ``cpu_count - 1``).

images/s = training images x epochs / wall seconds of the process (start-up, final validation and
saving included on both sides). The data are frames of the embedded world's "real" camera
(:mod:`sim2real.demo.world`), rendered once. Prints one line per run, the medians and, last,
``ratio_vs_plain_ultralytics: <pipeline / plain>`` (goal >= 0.95)::

    python benchmarks/bench_train.py                          # CPU, the demo profile of params.yaml
    python benchmarks/bench_train.py --device 0 --model yolov5l-p6.yaml --imgsz 1280 --frames 256
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = ["Car", "Van", "Truck"]
PLAIN = """
import json, sys
import torch
from ultralytics import YOLO
a = json.loads(sys.argv[1])
threads = a.pop("torch_threads")
model = YOLO(a.pop("model"), task="detect")
model.add_callback("on_pretrain_routine_start", lambda trainer: torch.set_num_threads(threads))
model.train(**a)
"""


def cli(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=48, help="training frames")
    ap.add_argument("--val-frames", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per run (overrides params.yaml)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per side")
    ap.add_argument("--model", default=None, help="default: params.yaml train.model")
    ap.add_argument("--imgsz", type=int, default=None, help="default: params.yaml train.imgsz")
    ap.add_argument("--batch", type=int, default=None, help="default: params.yaml train.batch")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=None, help="dataloader workers (default: params.yaml)")
    ap.add_argument("--torch-threads", type=int, default=None, help="CPU threads (default: params.yaml compute)")
    return ap.parse_args(argv)


def make_data(work: Path, n_train: int, n_val: int) -> tuple[Path, Path]:
    """Render demo 'real' frames; return (train variant dataset, val dataset) folders."""
    from sim2real.demo.world import render_kitti_frame
    from sim2real.detect import datasets
    from sim2real.manifest import index_kitti
    from sim2real.parallel import map_frames

    kitti = work / "kitti"
    items = [(str(kitti), i, 7, 0) for i in range(n_train + n_val)]
    for _ in map_frames(render_kitti_frame, items, workers=2, desc="bench frames"):
        pass
    frames, _ = index_kitti(kitti, n_val / (n_train + n_val), 0)
    frames.to_csv(work / "real_frames.csv", index=False)
    roots = [work]  # every file the benchmark reads lies in its scratch folder
    split_train = datasets.build_real_val(work / "real_frames.csv", work / "real_train", CLASSES, split="train", roots=roots)
    datasets.build_train_set([work / "real_train"], work / "train_set", n_classes=len(CLASSES), roots=roots)
    datasets.build_real_val(work / "real_frames.csv", work / "val_set", CLASSES, split="val", roots=roots)
    assert len(split_train) == n_train
    return work / "train_set", work / "val_set"


def plain_layout(work: Path, train_set: Path, val_set: Path) -> Path:
    """An ordinary ultralytics dataset folder (hard links) and its data.yaml."""
    from sim2real.io import link_or_copy

    root = work / "plain_ds"
    for split, src in (("train", train_set), ("val", val_set)):
        for kind in ("images", "labels"):
            for f in sorted((src / kind).iterdir()):
                link_or_copy(f, root / kind / split / f.name)
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val",
                                    "names": dict(enumerate(CLASSES))}, sort_keys=False))
    return data


def env_for(work: Path, tag: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env.update(PYTHONPATH=str(ROOT), YOLO_OFFLINE="true", WANDB_MODE=env.get("WANDB_MODE", "offline"),
               SIM2REAL_NO_PROGRESS="1", SIM2REAL_WANDB_ROOT=str(work / "wandb"))
    if tag == "plain":
        config = work / "plain_config"
        config.mkdir(exist_ok=True)
        import matplotlib
        font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        shutil.copyfile(font, config / "Arial.ttf")  # ultralytics' check_font finds it: no download
        env.update(YOLO_CONFIG_DIR=str(config))
    return env


def run_once(tag: str, k: int, work: Path, cfg, train_set: Path, val_set: Path, plain_yaml: Path,
             torch_threads: int) -> float:
    from sim2real.detect.train import train_args

    out = work / "runs" / f"{tag}{k}"
    if tag == "pipeline":
        cmd = [sys.executable, "-m", "stages.train", "--variant", "bench", "--seed", "0", "--data", str(train_set),
               "--val", str(val_set), "--out", str(out), "--plots", str(work / "plots" / f"{k}.csv")]
    else:
        args = train_args(cfg, plain_yaml, out)
        cmd = [sys.executable, "-c", PLAIN, json.dumps({"model": cfg.model, "torch_threads": torch_threads, **args})]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env_for(work, tag), capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{tag} run failed:\n{proc.stderr[-3000:]}")
    if not (out / "weights" / "best.pt").is_file():
        raise SystemExit(f"{tag} run wrote no best.pt")
    return wall


def main(argv=None) -> int:
    a = cli(argv)
    import torch
    import ultralytics
    from sim2real.detect.train import DetectTrainConfig
    from sim2real.params import build, validate_section

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    section = dict(params["train"])
    over = {"epochs": a.epochs, "device": a.device, "model": a.model, "imgsz": a.imgsz, "batch": a.batch,
            "workers": a.workers}
    section.update({k: v for k, v in over.items() if v is not None})
    cfg = build(DetectTrainConfig, validate_section("train", section))
    compute = {**params["compute"], **({"torch_threads": a.torch_threads} if a.torch_threads else {})}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        work = Path(tmp)
        train_set, val_set = make_data(work, a.frames, a.val_frames)
        plain_yaml = plain_layout(work, train_set, val_set)
        (work / "params.yaml").write_text(yaml.safe_dump({
            "train": {**section, "seeds": [0]}, "classes": CLASSES, "compute": compute,
            "variants": {"bench": {"data": str(train_set), "images": str(train_set)}},
            "tracking": params.get("tracking", {})}, sort_keys=False))
        print(json.dumps({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                          "load_avg": [round(x, 2) for x in os.getloadavg()], "torch": torch.__version__,
                          "ultralytics": ultralytics.__version__, "train": dataclasses.asdict(cfg),
                          "torch_threads": compute["torch_threads"], "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
                          "frames": a.frames, "val_frames": a.val_frames}, default=str))
        ips: dict[str, list[float]] = {"pipeline": [], "plain": []}
        for k in range(a.repeats):
            for tag in (("pipeline", "plain") if k % 2 == 0 else ("plain", "pipeline")):
                wall = run_once(tag, k, work, cfg, train_set, val_set, plain_yaml, int(compute["torch_threads"]))
                ips[tag].append(a.frames * cfg.epochs / wall)
                print(f"{tag:>8} run {k}: {wall:7.1f} s  {ips[tag][-1]:7.2f} images/s  "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)
    med = {t: statistics.median(v) for t, v in ips.items()}
    print(f"median images/s: pipeline {med['pipeline']:.2f}, plain ultralytics {med['plain']:.2f}")
    print(f"ratio_vs_plain_ultralytics: {med['pipeline'] / med['plain']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
