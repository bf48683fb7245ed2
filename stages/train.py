"""Stage train@<variant>-<seed>: train a YOLO detector on one variant with one training seed.

    python -m stages.train --variant baseline --seed 0 --data data/datasets/baseline \
        --val data/real_val --out data/train/baseline/seed0 --plots reports/train/baseline/seed0.csv

The run's ultralytics seed is ``seed + variants.<variant>.seed_offset`` (the negative control
``control`` is the baseline's data with an offset). Writes ``<out>/weights/best.pt``,
``<out>/results.csv`` and ``<out>/args.yaml`` (ultralytics'), ``<plots>`` (results.csv per epoch,
for ``dvc plots``) and one offline W&B run ``train-<variant>-seed<seed>`` grouped by the DVC
experiment (epoch rows as history, last row as summary).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from sim2real.detect import datasets
from sim2real.detect.train import DetectTrainConfig, finite_or_none, remove_tree, results_table, train
from sim2real.cli import entrypoint
from sim2real.io import atomic_outputs, temp_dir
from sim2real.params import build, load_params, plain
from sim2real.tracking import Tracker


def cli(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m stages.train", description="train one variant's detector")
    ap.add_argument("--variant", required=True)
    ap.add_argument("--seed", required=True, type=int, help="training seed (one of params train.seeds)")
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
    p = load_params("train", "classes", "variants", "compute", "tracking")
    seed = args.seed + datasets.variant_seed_offset(plain(p.variants), args.variant)
    cfg = build(DetectTrainConfig, p.train, seed=seed)
    run = f"{args.variant}-seed{args.seed}"
    scratch = temp_dir(f"sim2real-train-{run}-")
    try:
        data_yaml = datasets.stage_for_ultralytics(scratch, args.data, args.val, list(p.classes))
        with atomic_outputs() as outs:  # run folder and plots CSV renamed into place together, last
            tmp = outs.dir(args.out)
            train(cfg, data_yaml, tmp, scratch, torch_threads=int(p.compute.torch_threads))
            table = results_table(tmp / "results.csv")
            with outs.file(args.plots) as fh:
                table.to_csv(fh, index=False, float_format="%.6g")
        with Tracker("train", run, config={"train": dataclasses.asdict(cfg), "classes": list(p.classes),
                                           "data": str(args.data)}, tracking=p.tracking) as tracker:
            log_results(tracker, table)
    finally:
        remove_tree(scratch)
    print(f"train {run} (ultralytics seed {seed}): {len(table)} epochs -> {args.out / 'weights' / 'best.pt'}")


if __name__ == "__main__":
    entrypoint(main)
