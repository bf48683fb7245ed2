"""Stage `ingest`: index the chosen vKITTI2 frames and the real KITTI split into manifests.

Writes ``<out>/frames.csv``, ``boxes.csv``, ``real_frames.csv``, ``real_boxes.csv`` (columns in
:mod:`sim2real.manifest`) and ``summary.json`` (counts; frames skipped under ``data.on_error:
skip``). Every recorded path is checked against the data roots (:func:`sim2real.safety.data_roots`)
as later stages check it. Params: the ``data`` section.
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
from sim2real.manifest import check_manifest_paths, index_kitti, index_vkitti2_sequence
from sim2real.parallel import SkipLog, check_max_skip_fraction, check_on_error, check_skips
from sim2real.params import load_params
from sim2real.safety import data_roots


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
    allowed = data_roots(data)  # the rule every later stage applies to these manifests' paths
    skip = check_on_error(str(data.get("on_error") or "fail")) == "skip"  # a bad frame: left out, listed
    max_skip = check_max_skip_fraction(data.get("max_skip_fraction"))
    logs = {"vkitti2": SkipLog(name="ingest vkitti2"), "kitti": SkipLog(name="ingest kitti")}
    counts = {"frames": 0, "boxes": 0, "real_frames": 0, "real_boxes": 0}
    # content fingerprints (issue 15): hashed once per file version, cached outside every DVC output
    with atomic_dir(args.out) as tmp, FingerprintCache(scratch_dir("ingest") / "fingerprints.sqlite") as cache:
        seqs = [(s, v) for s in data.scenes for v in data.variations]
        for scene, variation in tqdm(seqs, desc="ingest vkitti2", unit="sequence"):
            frames, boxes = index_vkitti2_sequence(layout, scene, variation, int(data.camera),
                                                   frame_stride=int(data.frame_stride), max_frames=data.max_frames,
                                                   fingerprints=cache, skipped=logs["vkitti2"].skipped if skip else None)
            check_manifest_paths(frames, Path(args.out) / "frames.csv", allowed, first_line=counts["frames"] + 2)
            _append(tmp / "frames.csv", frames)
            _append(tmp / "boxes.csv", boxes)
            counts["frames"] += len(frames)
            counts["boxes"] += len(boxes)
        real, real_boxes = index_kitti(kitti_root, float(data.real_val_fraction), int(data.real_split_seed), cache,
                                       skipped=logs["kitti"].skipped if skip else None)
        check_manifest_paths(real, Path(args.out) / "real_frames.csv", allowed)
        n_real = len(real) + len(logs["kitti"].skipped)  # before the label files add their skips
        for df in tqdm(real_boxes, total=len(real), desc="ingest kitti", unit="image"):
            _append(tmp / "real_boxes.csv", df)
            counts["real_boxes"] += len(df)
        real = real[~real["image_id"].isin({s.frame_id for s in logs["kitti"].skipped})]
        real.to_csv(tmp / "real_frames.csv", index=False)
        counts["real_frames"] = len(real)
        counts["real_val"] = int((real["split"] == "val").sum())
        counts["skipped"] = {}
        for key, n_in, n_out in (("vkitti2", counts["frames"] + len(logs["vkitti2"].skipped), counts["frames"]),
                                 ("kitti", n_real, len(real))):
            log = logs[key]
            check_skips(len(log.skipped), n_in, max_skip, log.skipped[0].message if log.skipped
                        else "", where=log.name)
            counts["skipped"][key] = log.report(frames_in=n_in, frames_out=n_out)
        write_json(tmp / "summary.json", counts)
    print(f"ingest: {counts['frames']} synthetic frames ({counts['boxes']} boxes), {counts['real_frames']} real "
          f"({counts['real_val']} val, {counts['real_boxes']} boxes); skipped "
          f"{len(logs['vkitti2'].skipped)} synthetic, {len(logs['kitti'].skipped)} real")

if __name__ == "__main__":
    entrypoint(main)
