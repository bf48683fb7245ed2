"""Calibration inputs: a seeded subsample of the deduplicated synthetic frames (with depth and
instance masks) and of the real KITTI **train** split (never val: the gap and detection results
are measured there)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from sim2real.calibrate.fit import RealFrame, SimFrame
from sim2real.calibrate.stats import box_distance_m
from sim2real.errors import DataError
from sim2real.formats.images import read_rgb
from sim2real.formats.kitti import read_calib
from sim2real.formats.vkitti2 import read_depth_m, read_instance_seg
from sim2real.manifest import read_manifest
from sim2real.rng import keyed_rng

TRAIN = "train"


def subsample(ids: list[str], n_max: int | None, seed: int) -> list[str]:
    """At most ``n_max`` of ``ids`` drawn without replacement by a generator seeded by (seed,
    "calibrate"), returned in sorted order (all of them when ``n_max`` is None or large enough)."""
    ids = sorted(ids)
    if not n_max or len(ids) <= int(n_max):
        return ids
    rng = keyed_rng(int(seed), "calibrate")
    return sorted(ids[i] for i in rng.choice(len(ids), int(n_max), replace=False))


def read_sim_frames(dedupe_dir: str | Path, max_frames: int | None, seed: int, *,
                    roots: Sequence[str | Path]) -> list[SimFrame]:
    """The subsampled dedupe frames with pixels, depth, instance map, intrinsics, kept boxes and
    each box's distance (median depth over its instance pixels); manifest paths inside ``roots``."""
    dedupe_dir = Path(dedupe_dir)
    frames = read_manifest(dedupe_dir / "frames.csv", ["frame_id", "image", "depth", "instance_seg", "fx", "fy", "cx", "cy"],
                           roots=roots, missing_hint="run the dedupe stage first")
    boxes = read_manifest(dedupe_dir / "boxes_kept.csv", ["frame_id", "trackID", "left", "top", "right", "bottom"],
                          roots=roots)
    by_id = {str(k): g for k, g in boxes.groupby("frame_id")}
    chosen = set(subsample(frames["frame_id"].astype(str).tolist(), max_frames, seed))
    out = []
    for r in frames.itertuples():
        fid = str(r.frame_id)
        if fid not in chosen:
            continue
        image, depth = read_rgb(r.image), read_depth_m(r.depth)
        instance = read_instance_seg(r.instance_seg) if r.instance_seg else None
        g = by_id.get(fid)
        xyxy = np.zeros((0, 4)) if g is None else g[["left", "top", "right", "bottom"]].to_numpy(np.float64)
        tids = np.zeros(0, np.int64) if g is None else g["trackID"].to_numpy(np.int64)
        out.append(SimFrame(fid, image, depth, instance, (float(r.fx), float(r.fy), float(r.cx), float(r.cy)), xyxy,
                            box_distance_m(depth, instance, tids, xyxy)))
    return out


def real_train_ids(real_frames_csv: str | Path, *, roots: Sequence[str | Path]) -> list[str]:
    frames = read_manifest(real_frames_csv, ["image_id", "split", "image"], roots=roots)
    return sorted(frames.loc[frames["split"] == TRAIN, "image_id"].astype(str).tolist())


def read_real_frames(real_frames_csv: str | Path, real_boxes_csv: str | Path, classes: list[str],
                     max_frames: int | None, seed: int, *, roots: Sequence[str | Path]) -> list[RealFrame]:
    """The subsampled real **train** frames with their boxes of ``classes`` that carry a 3D
    location (label_2 z > 0; DontCare rows have none) and the camera from calib P2 (when listed).
    Val images are never opened; manifest paths must lie inside ``roots``."""
    frames = read_manifest(real_frames_csv, ["image_id", "split", "image"], roots=roots)
    train = frames[frames["split"] == TRAIN]
    if train.empty:
        raise DataError(real_frames_csv, "no real frames with split == train")
    chosen = set(subsample(train["image_id"].astype(str).tolist(), max_frames, seed))
    boxes = read_manifest(real_boxes_csv, ["image_id", "type", "left", "top", "right", "bottom", "z"], roots=roots)
    boxes = boxes[boxes["type"].isin(classes) & (boxes["z"].astype(float) > 0) & boxes["image_id"].isin(chosen)]
    by_id = {str(k): g for k, g in boxes.groupby("image_id")}
    out = []
    for r in train.itertuples():
        iid = str(r.image_id)
        if iid not in chosen:
            continue
        g = by_id.get(iid)
        xyxy = np.zeros((0, 4)) if g is None else g[["left", "top", "right", "bottom"]].to_numpy(np.float64)
        z = np.zeros(0) if g is None else g["z"].to_numpy(np.float64)
        intrinsics = None
        if getattr(r, "calib", ""):
            p2 = read_calib(r.calib)["P2"]
            intrinsics = (float(p2[0, 0]), float(p2[1, 1]), float(p2[0, 2]), float(p2[1, 2]))
        out.append(RealFrame(iid, read_rgb(r.image), xyxy, z, intrinsics))
    return out
