"""Stage evaluate@<variant>: score one variant's detector on real-KITTI val.

    python -m stages.evaluate --variant baseline --weights data/train/baseline/weights/best.pt \
        --val data/datasets/real_val --out data/eval/baseline --metrics reports/metrics/baseline.json

Writes ``<out>/detections/<image_id>.txt`` (KITTI result format) and ``<metrics>``::

    {"kitti": {"Car": {"easy", "moderate", "hard", "easy_R11", ..., "n_gt_easy", ...}},   # percent
     "mAP50": {"all", "Car", ...}, "mAP50-95": {...},                                      # ultralytics val, 0..1
     "val_images": N, "detections": M}

KITTI AP comes from :mod:`sim2real.metrics.kitti_ap` (devkit rules, DontCare included); mAP from
ultralytics ``val`` (COCO-style, not the KITTI metric). One offline W&B run ``evaluate-<variant>``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from sim2real.detect import checkpoint, datasets, offline
from sim2real.detect.predict import predict_kitti, val_metrics
from sim2real.detect.train import remove_tree, scratch_dir
from sim2real.errors import ConfigError
from sim2real.cli import entrypoint
from sim2real.io import atomic_outputs
from sim2real.manifest import check_manifest_paths
from sim2real.metrics import kitti_ap
from sim2real.params import load_params
from sim2real.tracking import Tracker


def cli(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m stages.evaluate", description="evaluate one variant on real KITTI")
    ap.add_argument("--variant", required=True)
    ap.add_argument("--weights", required=True, type=Path)
    ap.add_argument("--val", required=True, type=Path, help="the real-KITTI val dataset (build_dataset val)")
    ap.add_argument("--out", required=True, type=Path, help="folder for detections/")
    ap.add_argument("--metrics", default=None, type=Path,
                    help="optional JSON of these numbers (the study's metrics come from stage score)")
    return ap.parse_args(argv)


def evaluate(variant: str, weights: Path, val_dir: Path, out: Path, params) -> dict:
    """Run ultralytics val + KITTI-format predictions into ``out``; return the metrics dict."""
    ev = params.evaluate
    classes = list(params.classes)
    if not weights.is_file():
        raise ConfigError(f"{weights}: trained weights not found (run the train stage first)")
    scratch = scratch_dir(f"sim2real-eval-{variant}-")
    try:
        offline.configure(scratch)  # every ultralytics load below is weights-only
        checkpoint.check_checkpoint(weights, "--weights")  # one clear line for an unsafe or foreign file
        from ultralytics import YOLO

        model = YOLO(str(weights), task="detect")
        names = model.names
        if [names[i] for i in sorted(names)] != classes:
            raise ConfigError(f"{weights}: model classes {list(names.values())} differ from params classes {classes}")
        imgsz = ev.imgsz
        if not imgsz:  # null: the training imgsz recorded in the checkpoint
            ckpt = getattr(model, "ckpt", None) or {}
            imgsz = (ckpt.get("train_args") or {}).get("imgsz")
        if not imgsz:
            raise ConfigError("evaluate.imgsz is null and the weights do not record their training imgsz")
        data_yaml = datasets.stage_for_ultralytics(scratch, None, val_dir, classes)
        maps = val_metrics(model, data_yaml, imgsz=int(imgsz), batch=int(ev.batch), device=str(ev.device),
                           conf=float(ev.val_conf), iou=float(ev.iou), names=classes, project=scratch / "runs")
        frames = pd.read_csv(val_dir / "frames.csv", dtype={"image_id": str})
        check_manifest_paths(frames, val_dir / "frames.csv", base=val_dir)  # read as val_dir / path below
        images = [val_dir / p for p in frames["image"]]
        n_det = predict_kitti(model, images, out / "detections", imgsz=int(imgsz), conf=float(ev.conf),
                              iou=float(ev.iou), max_det=int(ev.max_det), device=str(ev.device), batch=int(ev.batch))
    finally:
        remove_tree(scratch)
    kap = kitti_ap.evaluate_folders(val_dir / "kitti_labels", out / "detections", list(ev.kitti_classes))
    return {"kitti": kap, **maps, "val_images": len(images), "detections": n_det, "imgsz": int(imgsz)}


def drop_none(d):
    if isinstance(d, dict):
        return {k: drop_none(v) for k, v in d.items() if v is not None}
    return d


def main(argv=None) -> None:
    args = cli(argv)
    p = load_params("evaluate", "classes")
    with atomic_outputs() as outs:  # detections and metrics renamed into place together, last
        metrics = evaluate(args.variant, args.weights, args.val, outs.dir(args.out), p)
        if args.metrics is not None:
            outs.json(args.metrics, metrics)
    with Tracker("evaluate", args.variant, config={"evaluate": dict(p.evaluate), "weights": str(args.weights)}) as t:
        t.summary(drop_none(metrics))
    car = metrics["kitti"].get("Car", {})
    print(f"evaluate {args.variant}: KITTI Car AP|R40 easy/mod/hard = {car.get('easy')}/{car.get('moderate')}/"
          f"{car.get('hard')}  mAP50 = {metrics['mAP50']['all']:.4f}")


if __name__ == "__main__":
    entrypoint(main)
