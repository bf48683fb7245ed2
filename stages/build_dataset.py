"""Stage build_dataset: detection datasets in ultralytics' layout (images linked, not copied).

Three forms, one per dvc.yaml stage family::

    python -m stages.build_dataset variant --name depth_blur --src data/aug/depth_blur --out data/datasets/depth_blur
    python -m stages.build_dataset mix --out data/mix           # reads params mix.sources, mix.fraction, seed
    python -m stages.build_dataset val --real-frames data/ingest/real_frames.csv --out data/real_val
    python -m stages.build_dataset real --split train --real-frames data/ingest/real_frames.csv --out data/real_train

``variant`` writes ``images/`` + ``labels/`` + ``frames.csv`` for one variant's training frames;
``mix`` writes a new variant dataset (frames.csv/images/labels contract) mixing several sources;
``val`` converts the real-KITTI val split (YOLO labels with the ``classes`` map, plus the original
KITTI label files for the KITTI metric); ``real --split train`` the same for the train split, the
oracle variant's dataset (it reads only that split's rows: no val image can enter it).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from sim2real.detect import datasets
from sim2real.cli import entrypoint
from sim2real.io import atomic_dir, write_json
from sim2real.params import load_params
from sim2real.safety import data_roots


def cli(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m stages.build_dataset", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    v = sub.add_parser("variant", help="one variant's training set")
    v.add_argument("--name", required=True)
    v.add_argument("--src", required=True, help="the variant dataset folder (frames.csv, images, labels)")
    v.add_argument("--out", required=True, type=Path)
    m = sub.add_parser("mix", help="a mixture of variant datasets (params mix.sources, mix.fraction)")
    m.add_argument("--out", required=True, type=Path)
    r = sub.add_parser("val", help="the real-KITTI val split")
    r.add_argument("--real-frames", required=True, type=Path)
    r.add_argument("--out", required=True, type=Path)
    t = sub.add_parser("real", help="one real-KITTI split (train: the oracle variant's dataset)")
    t.add_argument("--split", required=True, choices=("train", "val"))
    t.add_argument("--real-frames", required=True, type=Path)
    t.add_argument("--out", required=True, type=Path)
    return ap.parse_args(argv)


def summary(table) -> dict:
    boxes = int(table["n_boxes"].sum()) if "n_boxes" in table.columns else None
    return {"frames": int(len(table)), "boxes": boxes}


def main(argv=None) -> None:
    args = cli(argv)
    if args.mode == "variant":
        p = load_params("classes", "data")
        with atomic_dir(args.out) as tmp:
            table = datasets.build_train_set([args.src], tmp, n_classes=len(p.classes), roots=data_roots(p.data))
            write_json(tmp / "summary.json", {"variant": args.name, "source": args.src, **summary(table)})
        print(f"build_dataset {args.name}: {len(table)} frames from {args.src} -> {args.out}")
    elif args.mode == "mix":
        p = load_params("mix", "seed", "data")
        sources = list(p.mix.sources)
        with atomic_dir(args.out) as tmp:
            table = datasets.build_mix(sources, tmp, float(p.mix.fraction), int(p.seed), final_dir=args.out,
                                       roots=data_roots(p.data))
            counts = table["source"].value_counts().sort_index().to_dict()
            write_json(tmp / "summary.json", {"frames": len(table), "per_source": counts,
                                              "fraction": float(p.mix.fraction)})
        print(f"build_dataset mix: {len(table)} frames {counts} -> {args.out}")
    else:
        split = getattr(args, "split", "val")
        p = load_params("classes", "data")
        with atomic_dir(args.out) as tmp:
            table = datasets.build_real_val(args.real_frames, tmp, list(p.classes), split=split,
                                            roots=data_roots(p.data))
            write_json(tmp / "summary.json", {"split": split, **summary(table)})
        print(f"build_dataset real {split}: {len(table)} real frames -> {args.out}")


if __name__ == "__main__":
    entrypoint(main)
