"""Stage score@<variant> (interim point-estimate version; the study-metrics branch replaces this
file with bootstrap intervals and gap closure): KITTI AP and ultralytics mAP of one variant,
averaged over its training seeds.

    python -m stages.score --variant depth_blur --eval data/eval --val data/real_val \
        --out reports/metrics/depth_blur.json

Reads ``<eval>/<variant>/seed*/detections`` (KITTI AP|R40 and AP|R11 against
``<val>/kitti_labels``, :mod:`sim2real.metrics.kitti_ap`) and ``seed*/ultralytics.json``.
Writes ``{"kitti": {<class>: {...}}, "mAP50": {...}, "mAP50-95": {...}, "seeds": [...], ...}``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sim2real.cli import entrypoint
from sim2real.errors import DataError
from sim2real.io import write_json
from sim2real.metrics import kitti_ap
from sim2real.params import load_params


def cli(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m stages.score", description="score one variant")
    ap.add_argument("--variant", required=True)
    ap.add_argument("--eval", required=True, type=Path, help="folder of <variant>/seed<s>/ (evaluate outputs)")
    ap.add_argument("--val", required=True, type=Path, help="the real-KITTI val dataset")
    ap.add_argument("--out", required=True, type=Path)
    return ap.parse_args(argv)


def mean_nested(items: list[dict]) -> dict:
    """Element-wise mean of same-shaped nested dicts of numbers (None stays None)."""
    out = {}
    for k, v in items[0].items():
        vals = [it.get(k) for it in items]
        if isinstance(v, dict):
            out[k] = mean_nested(vals)
        elif any(x is None for x in vals):
            out[k] = None
        else:
            out[k] = float(np.mean(vals))
    return out


def main(argv=None) -> None:
    args = cli(argv)
    p = load_params("evaluate")
    runs = sorted((args.eval / args.variant).glob("seed*"))
    if not runs:
        raise DataError(args.eval / args.variant, "no seed<s> folders (run the evaluate stages first)")
    kap = [kitti_ap.evaluate_folders(args.val / "kitti_labels", r / "detections", list(p.evaluate.kitti_classes))
           for r in runs]
    ul = [json.loads((r / "ultralytics.json").read_text()) for r in runs]
    metrics = {"kitti": mean_nested(kap), "mAP50": mean_nested([u["mAP50"] for u in ul]),
               "mAP50-95": mean_nested([u["mAP50-95"] for u in ul]), "seeds": [r.name for r in runs],
               "val_images": ul[0]["val_images"]}
    write_json(args.out, metrics)
    car = metrics["kitti"].get("Car", {})
    print(f"score {args.variant}: KITTI Car AP|R40 mod = {car.get('moderate')}  mAP50 = {metrics['mAP50']['all']:.4f}")


if __name__ == "__main__":
    entrypoint(main)
