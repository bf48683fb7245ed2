"""Stage score@<variant>: the study's metrics of one variant with intervals and gap closure.

    python -m stages.score --variant depth_blur --eval data/eval --val data/real_val \
        --out reports/metrics/depth_blur.json

Reads ``<eval>/<variant>/seed<s>/detections/*.txt`` for every ``s`` in ``train.seeds``, the same
for ``baseline`` and ``real`` (paired bootstrap and gap closure), and the real val split
(``<val>/kitti_labels``, ``<val>/frames.csv``, ``<val>/calib``). Writes the metrics JSON (keys in
:mod:`sim2real.metrics.study`). Params: study, train.seeds, classes, evaluate.kitti_classes.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from sim2real.cli import entrypoint
from sim2real.io import write_json
from sim2real.metrics.study import ci_key, score_variant
from sim2real.params import load_params
from sim2real.safety import data_roots


def cli(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m stages.score", description="score one variant on real KITTI val")
    ap.add_argument("--variant", required=True)
    ap.add_argument("--eval", required=True, type=Path, help="folder of <variant>/seed<s>/detections (evaluate stage)")
    ap.add_argument("--val", required=True, type=Path, help="the real-KITTI val dataset (build_val)")
    ap.add_argument("--out", required=True, type=Path, help="metrics JSON (git-tracked)")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = cli(argv)
    p = load_params("study", "train", "classes", "evaluate", "data")
    t0 = time.perf_counter()
    out = score_variant(args.variant, args.eval, args.val, seeds=list(p.train.seeds), classes=list(p.classes),
                        kitti_classes=list(p.evaluate.kitti_classes), study=p.study, roots=data_roots(p.data))
    write_json(args.out, out)
    k = ci_key(float(p.study.ci_level))
    car, g = out["kitti"]["Car"], out["gap_closure"]["kitti_car_moderate"]
    print(f"score {args.variant}: Car moderate AP|R40 {car['moderate']} {car[f'moderate_{k}']}, "
          f"mAP50 {out['mAP50']['all']} {out[f'mAP50_{k}']}, G {g['value']} {g[k]} "
          f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    entrypoint(main)
