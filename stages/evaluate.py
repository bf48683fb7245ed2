"""Stage evaluate@<variant>-<seed>: one trained detector's predictions on the real-KITTI val split.

    python -m stages.evaluate --variant baseline --weights data/train/baseline/seed0/weights/best.pt \
        --val data/real_val --out data/eval/baseline/seed0

Writes ``<out>/detections/<image_id>.txt`` (KITTI result format with scores, one file per val
image, possibly empty; boxes scoring at least ``evaluate.conf``) and ``<out>/ultralytics.json``
(ultralytics ``val``: COCO-style ``mAP50`` / ``mAP50-95``, all classes and per class, for
cross-checks). Scoring (KITTI AP, intervals, gap closure) is the ``score@<variant>`` stage's.
One offline W&B run ``evaluate-<variant>-seed<seed>``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from sim2real.detect import checkpoint, datasets, offline
from sim2real.detect.predict import predict_kitti, val_metrics
from sim2real.detect.train import remove_tree
from sim2real.errors import ConfigError
from sim2real.cli import entrypoint
from sim2real.io import atomic_outputs, temp_dir, write_json
from sim2real.manifest import read_manifest
from sim2real.parallel import check_device
from sim2real.params import load_params
from sim2real.safety import data_roots
from sim2real.tracking import Tracker


def cli(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m stages.evaluate", description="predict one detector on real KITTI val")
    ap.add_argument("--variant", required=True, help="run name in logs, e.g. baseline-seed0")
    ap.add_argument("--weights", required=True, type=Path)
    ap.add_argument("--val", required=True, type=Path, help="the real-KITTI val dataset (build_dataset val)")
    ap.add_argument("--out", required=True, type=Path, help="folder for detections/ and ultralytics.json")
    return ap.parse_args(argv)


def evaluate(variant: str, weights: Path, val_dir: Path, out: Path, params, roots: list[Path]) -> dict:
    """Write KITTI-format detections into ``out/detections``; return ultralytics val numbers.
    ``roots``: the data roots the val manifest's paths must lie in."""
    ev = params.evaluate
    classes = list(params.classes)
    if not weights.is_file():
        raise ConfigError(f"{weights}: trained weights not found (run the train stage first)")
    check_device(ev.device, "evaluate.device", gpu_indices=True)
    scratch = temp_dir(f"sim2real-eval-{variant}-")
    try:
        offline.configure(scratch)  # every ultralytics load below is weights-only
        offline.set_torch_threads(int(params.compute.torch_threads))
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
        frames = read_manifest(val_dir / "frames.csv", ["image"], roots=roots, base=val_dir)  # read as val_dir / path
        images = [val_dir / p for p in frames["image"]]
        n_det = predict_kitti(model, images, out / "detections", imgsz=int(imgsz), conf=float(ev.conf),
                              iou=float(ev.iou), max_det=int(ev.max_det), device=str(ev.device), batch=int(ev.batch))
    finally:
        remove_tree(scratch)
    return {**maps, "val_images": len(images), "detections": n_det, "imgsz": int(imgsz)}


def main(argv=None) -> None:
    args = cli(argv)
    p = load_params("evaluate", "classes", "compute", "data", "tracking")
    with atomic_outputs() as outs:  # detections and ultralytics.json renamed into place together, last
        tmp = outs.dir(args.out)
        numbers = evaluate(args.variant, args.weights, args.val, tmp, p, data_roots(p.data))
        write_json(tmp / "ultralytics.json", numbers)
    with Tracker("evaluate", args.variant, config={"evaluate": dict(p.evaluate), "weights": str(args.weights)},
                 tracking=p.tracking) as t:
        t.summary(numbers)
    print(f"evaluate {args.variant}: {numbers['detections']} detections on {numbers['val_images']} val images "
          f"-> {args.out / 'detections'}  (ultralytics mAP50 = {numbers['mAP50']['all']:.4f})")


if __name__ == "__main__":
    entrypoint(main)
