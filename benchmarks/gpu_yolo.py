"""GPU check: train YOLOv5l6 (``yolov5l-p6.yaml``) at 1280 px for a few iterations, FP32 vs AMP.

For a lent CUDA machine. Builds the training set from a variant dataset of the demo world
(default ``data/dedupe``, whose frames point into ``data/demo``: carry both), repeats its frames
to ``--images`` so that an epoch has enough iterations, and trains through
:func:`sim2real.detect.train.train` (so the offline patches, including the local AMP check that
needs no downloaded weights, are what is exercised). Prints, per precision, the median training
throughput in images/s over the iterations after ``--warmup``, and the AMP/FP32 ratio, with the
GPU name and library versions::

    python benchmarks/gpu_yolo.py                      # AMP and FP32, batch 16, 2 epochs each
    python benchmarks/gpu_yolo.py --only amp --batch 32

Without a CUDA device it prints that it skipped and exits 0 (``make bench`` runs every
benchmark); ``--device cpu --model yolov5n-p6.yaml --imgsz 128`` is a CPU smoke run of the script.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_set(src: Path, work: Path, n_images: int) -> tuple[Path, Path]:
    """A training set of ``n_images`` (the variant's frames repeated, hard links) + itself as val."""
    from sim2real.detect import datasets
    from sim2real.io import link_or_copy
    from sim2real.params import load_params
    from sim2real.safety import data_roots

    base = work / "base"
    roots = data_roots(load_params("data", path=ROOT / "params.yaml").data, base=ROOT)
    table = datasets.build_train_set([src], base, n_classes=3, roots=roots)
    ds = work / "ds"
    for i in range(n_images):
        row = table.iloc[i % len(table)]
        stem = f"r{i // len(table):03d}_{row.frame_id}"
        link_or_copy(base / row.image, ds / "images" / f"{stem}{Path(row.image).suffix}")
        link_or_copy(base / row.label, ds / "labels" / f"{stem}.txt")
    return ds, base


def run(precision: str, args, data_yaml: Path, work: Path) -> dict:
    import torch
    from sim2real.detect.train import DetectTrainConfig, train

    times: list[float] = []
    state = {}
    sync = torch.cuda.synchronize if args.device != "cpu" else (lambda: None)

    def start(trainer):
        sync()
        state["t"] = time.perf_counter()

    def end(trainer):
        sync()
        times.append(time.perf_counter() - state["t"])
        state["amp"] = bool(trainer.amp)

    import ultralytics.engine.trainer as tr
    orig = tr.BaseTrainer.__init__

    def init(self, *a, **k):  # attach the timing callbacks to the trainer ultralytics builds
        orig(self, *a, **k)
        self.add_callback("on_train_batch_start", start)
        self.add_callback("on_train_batch_end", end)
    tr.BaseTrainer.__init__ = init
    cfg = DetectTrainConfig(model=args.model, imgsz=args.imgsz, epochs=args.epochs, batch=args.batch, device=args.device,
                      workers=args.workers, seed=0, deterministic=False, cache="ram", amp=(precision == "amp"))
    t0 = time.perf_counter()
    try:
        train(cfg, data_yaml, work / f"run_{precision}", work / f"scratch_{precision}")
    finally:
        tr.BaseTrainer.__init__ = orig
    steady = times[args.warmup:] or times
    med = statistics.median(steady)
    return {"precision": precision, "amp_active": state.get("amp"), "iterations": len(times),
            "median_s_per_iter": med, "images_per_s": args.batch / med, "wall_s": time.perf_counter() - t0,
            "max_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if args.device != "cpu" else 0.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "dedupe", help="a variant dataset folder")
    ap.add_argument("--model", default="yolov5l-p6.yaml")
    ap.add_argument("--imgsz", type=int, default=1280)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--images", type=int, default=128, help="training images per epoch (frames repeated)")
    ap.add_argument("--warmup", type=int, default=3, help="iterations left out of the median")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--device", default="0")
    ap.add_argument("--only", choices=["amp", "fp32"], default=None)
    args = ap.parse_args(argv)

    import torch
    if args.device != "cpu" and not torch.cuda.is_available():
        print("gpu_yolo: skipped, no CUDA device visible (run it on a GPU machine; --device cpu for a smoke run)")
        return 0
    if not (args.data / "frames.csv").is_file():
        print(f"{args.data}/frames.csv not found: run `dvc repro dedupe` (or carry data/dedupe and data/demo)",
              file=sys.stderr)
        return 2
    import ultralytics
    from sim2real.detect import datasets

    results = []
    with tempfile.TemporaryDirectory(prefix="gpu_yolo_") as tmp:
        work = Path(tmp)
        ds, _ = build_set(args.data, work, args.images)
        data_yaml = datasets.stage_for_ultralytics(work / "view", ds, ds, ["Car", "Van", "Truck"])
        for precision in ([args.only] if args.only else ["fp32", "amp"]):
            if args.device != "cpu":
                torch.cuda.reset_peak_memory_stats()
            results.append(run(precision, args, data_yaml, work))
    info = {"gpu": torch.cuda.get_device_name(0) if args.device != "cpu" else "cpu", "torch": torch.__version__, "cuda": torch.version.cuda,
            "ultralytics": ultralytics.__version__, "model": args.model, "imgsz": args.imgsz, "batch": args.batch}
    print(json.dumps(info))
    for r in results:
        print(f"{r['precision']:>5}: {r['images_per_s']:8.1f} images/s  (median {r['median_s_per_iter'] * 1000:.0f} ms/iter "
              f"over {max(r['iterations'] - args.warmup, 1)} iters, AMP active: {r['amp_active']}, "
              f"peak {r['max_mem_gib']:.1f} GiB, wall {r['wall_s']:.0f} s)")
    if len(results) == 2:
        print(f"AMP / FP32 throughput ratio: {results[1]['images_per_s'] / results[0]['images_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
