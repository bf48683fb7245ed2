"""Stage train@<variant>: train a YOLO detector on one variant, validate on real-KITTI val.

    python -m stages.train --variant baseline --data data/datasets/baseline \
        --val data/datasets/real_val --out data/train/baseline --plots reports/train/baseline.csv

Writes ``<out>/weights/best.pt``, ``<out>/results.csv`` and ``<out>/args.yaml`` (ultralytics'),
``<plots>`` (results.csv per epoch, for ``dvc plots``) and one offline W&B run
``train-<variant>`` grouped by the DVC experiment (epoch rows as history, last row as summary).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from sim2real.detect import datasets
from sim2real.detect.train import TrainConfig, finite_or_none, remove_tree, results_table, scratch_dir, train
from sim2real.cli import entrypoint
from sim2real.io import atomic_outputs
from sim2real.params import load_params
from sim2real.tracking import Tracker


def cli(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m stages.train", description="train one variant's detector")
    ap.add_argument("--variant", required=True)
    ap.add_argument("--data", required=True, type=Path, help="the variant's dataset (build_dataset output)")
    ap.add_argument("--val", required=True, type=Path, help="the real-KITTI val dataset")
    ap.add_argument("--out", required=True, type=Path, help="run folder (weights/best.pt, results.csv)")
    ap.add_argument("--plots", required=True, type=Path, help="per-epoch CSV for dvc plots")
    return ap.parse_args(argv)


def log_results(tracker: Tracker, table) -> None:
    """One W&B history step per epoch; the last epoch as summary."""
    for row in table.to_dict(orient="records"):
        values = {k: v for k, v in ((k, finite_or_none(v)) for k, v in row.items() if k != "epoch") if v is not None}
        tracker.log(values, step=int(row["epoch"]))
    if len(table):
        last = {k: finite_or_none(v) for k, v in table.iloc[-1].to_dict().items()}
        tracker.summary({k: v for k, v in last.items() if v is not None})


def main(argv=None) -> None:
    args = cli(argv)
    p = load_params("train", "classes")
    cfg = TrainConfig.from_params(p.train)
    scratch = scratch_dir(f"sim2real-train-{args.variant}-")
    try:
        data_yaml = datasets.stage_for_ultralytics(scratch, args.data, args.val, list(p.classes))
        with atomic_outputs() as outs:  # run folder and plots CSV renamed into place together, last
            tmp = outs.dir(args.out)
            train(cfg, data_yaml, tmp, scratch)
            table = results_table(tmp / "results.csv")
            with outs.file(args.plots) as fh:
                table.to_csv(fh, index=False, float_format="%.6g")
        with Tracker("train", args.variant, config={"train": dict(p.train), "classes": list(p.classes),
                                                    "data": str(args.data)}) as tracker:
            log_results(tracker, table)
    finally:
        remove_tree(scratch)
    print(f"train {args.variant}: {len(table)} epochs -> {args.out / 'weights' / 'best.pt'}")


if __name__ == "__main__":
    entrypoint(main)
