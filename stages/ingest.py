"""Stage `ingest`: index the chosen vKITTI2 frames and the real KITTI split into manifests.

Writes ``<out>/frames.csv``, ``boxes.csv``, ``real_frames.csv``, ``real_boxes.csv`` (columns in
:mod:`sim2real.manifest`). Params: the ``data`` section.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from sim2real.errors import ConfigError
from sim2real.formats import vkitti2
from sim2real.cli import entrypoint
from sim2real.fingerprint import FingerprintCache
from sim2real.io import atomic_dir, scratch_dir, write_json
from sim2real.manifest import index_kitti, index_vkitti2_sequence
from sim2real.params import load_params


def cli(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    return ap.parse_args(argv)


def roots(data) -> tuple[vkitti2.Layout, Path]:
    """Where the synthetic and real data live for ``data.source``."""
    if data.source == "demo":
        return vkitti2.Layout.from_root(Path(data.demo_root) / "vkitti2"), Path(data.demo_root) / "kitti"
    if data.source == "vkitti2":
        if not data.vkitti2_root:
            raise ConfigError("params.yaml: data.source is vkitti2 but data.vkitti2_root is not set")
        if not data.kitti_root:
            raise ConfigError("params.yaml: data.source is vkitti2 but data.kitti_root is not set")
        return vkitti2.Layout.from_root(data.vkitti2_root), Path(data.kitti_root)
    raise ConfigError(f"params.yaml: data.source must be demo or vkitti2, got {data.source!r}")


def _append(path: Path, df: pd.DataFrame) -> None:
    df.to_csv(path, mode="a", header=not path.exists(), index=False)


def main(argv=None) -> None:
    args = cli(argv)
    data = load_params("data").data
    layout, kitti_root = roots(data)
    counts = {"frames": 0, "boxes": 0, "real_frames": 0, "real_boxes": 0}
    # content fingerprints (issue 15): hashed once per file version, cached outside every DVC output
    with atomic_dir(args.out) as tmp, FingerprintCache(scratch_dir("ingest") / "fingerprints.sqlite") as cache:
        seqs = [(s, v) for s in data.scenes for v in data.variations]
        for scene, variation in tqdm(seqs, desc="ingest vkitti2", unit="sequence"):
            frames, boxes = index_vkitti2_sequence(layout, scene, variation, int(data.camera),
                                                   frame_stride=data.frame_stride, max_frames=data.max_frames,
                                                   fingerprints=cache)
            _append(tmp / "frames.csv", frames)
            _append(tmp / "boxes.csv", boxes)
            counts["frames"] += len(frames)
            counts["boxes"] += len(boxes)
        real, real_boxes = index_kitti(kitti_root, float(data.real_val_fraction), int(data.real_split_seed), cache)
        real.to_csv(tmp / "real_frames.csv", index=False)
        counts["real_frames"] = len(real)
        for df in tqdm(real_boxes, total=len(real), desc="ingest kitti", unit="image"):
            _append(tmp / "real_boxes.csv", df)
            counts["real_boxes"] += len(df)
        counts["real_val"] = int((real["split"] == "val").sum())
        write_json(tmp / "summary.json", counts)
    print(f"ingest: {counts}")


if __name__ == "__main__":
    entrypoint(main)
