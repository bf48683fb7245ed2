"""Detection quality by object distance and by occlusion level (KITTI Car, IoU > 0.7).

* **Distance of a ground-truth object**: camera z of its 3D box centre, in metres — KITTI
  ``label_2``'s location z (rectified camera 0 coordinates; x right, y down, z forward). DontCare
  rows and rows without a valid location (x, y or z = -1000, or z <= 0) get NaN and fall in no
  bin (:func:`object_distance_m`, :func:`assign_bins`); they are counted in the output.
* **Bins**: edges in metres, e.g. ``[0, 20, 40, 60]`` -> 0–20, 20–40, 40–60, 60+ (the last bin is
  open); a distance ``d`` is in bin ``k`` when ``edge_k <= d < edge_k+1``.
* **Slices** (:func:`slice_tables`): the Car ground truth the KITTI devkit counts at *Hard*
  except its height rule (occluded <= 2, truncated <= 0.50, any box height — far cars are
  short), split by distance bin or by occlusion level (0, 1, 2). In a slice, every other Car
  and every Van is ignored the devkit way: a detection matched to it is neither TP nor FP;
  other classes are skipped; DontCare regions absorb unmatched detections as in the devkit.
* **Unmatched detections** are false positives only in the distance bin of their *estimated*
  distance (:func:`ground_plane_distance_m`): the box's bottom edge is intersected with the
  ground plane seen by ``P2`` from ``camera_height_m`` above it — the near face of the car — and
  half a Car length (``car_length_m / 2``) is added to reach the box centre. In the occlusion
  slices (occlusion cannot be estimated from a box) every unmatched detection is an FP, as in
  the devkit's difficulties.

Per slice the study reports recall at one operating point per detector (the score threshold
maximising F1 over all slices' ground truth together, :meth:`ApTable.f1_operating_point`) and
AP|R40 with the devkit's threshold sampling; intervals come from the image bootstrap.

References: the KITTI object devkit (``readme.txt``: label and calib formats); Geiger et al.,
CVPR 2012 (camera mounted 1.65 m above the ground).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from sim2real.errors import ConfigError
from sim2real.metrics import kitti_ap
from sim2real.metrics.bootstrap import ApTable, build_ap_table

INVALID_LOCATION = -1000.0
#: the devkit's Hard limits, used without its min-height rule
MAX_OCCLUSION = 2
MAX_TRUNCATION = 0.5
OCCLUSION_LEVELS = (0, 1, 2)


def object_distance_m(labels: pd.DataFrame) -> np.ndarray:
    """Camera z (m) of each label row's 3D box centre; NaN for DontCare and invalid locations."""
    z = labels["z"].to_numpy(dtype=np.float64)
    bad = ((labels["type"].to_numpy() == "DontCare") | (z <= 0)
           | (labels[["x", "y", "z"]].to_numpy(dtype=np.float64) == INVALID_LOCATION).any(axis=1))
    return np.where(bad, np.nan, z)


def check_edges(edges_m: Sequence[float], key: str = "study.distance_bins_m") -> np.ndarray:
    """Validated bin edges: at least two, non-negative, strictly increasing (ConfigError naming ``key``)."""
    e = np.asarray(list(edges_m), dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or not np.all(np.isfinite(e)) or e[0] < 0 or np.any(np.diff(e) <= 0):
        raise ConfigError(f"params.yaml: {key} must be >= 2 increasing non-negative edges in metres, got {list(edges_m)}")
    return e


def bin_names(edges_m: Sequence[float]) -> list[str]:
    """``[0, 20, 40, 60]`` -> ``["0-20", "20-40", "40-60", "60+"]`` (metres)."""
    e = [f"{x:g}" for x in edges_m]
    return [f"{a}-{b}" for a, b in zip(e[:-1], e[1:])] + [f"{e[-1]}+"]


def assign_bins(distance_m: np.ndarray, edges_m: Sequence[float]) -> np.ndarray:
    """Bin index of each distance (``edge_k <= d < edge_k+1``, last bin open); -1 for NaN or below
    the first edge. ``+inf`` (e.g. a box above the horizon) falls in the last bin."""
    e = np.asarray(edges_m, dtype=np.float64)
    d = np.asarray(distance_m, dtype=np.float64)
    k = np.searchsorted(e, np.nan_to_num(d, nan=-1.0), side="right") - 1
    return np.where(np.isnan(d) | (d < e[0]), -1, np.minimum(k, len(e) - 1)).astype(np.int64)


def camera_height_from_labels(labels: Sequence[pd.DataFrame], cls: str = "Car") -> float | None:
    """Median location y (m) of the ``cls`` objects with a valid location: KITTI's y is the bottom
    of the 3D box, so on flat ground it is the camera's height above the road. None if none."""
    ys = [df.loc[(df["type"] == cls), "y"].to_numpy(dtype=np.float64)[np.isfinite(object_distance_m(df[df["type"] == cls]))]
          for df in labels]
    y = np.concatenate(ys) if ys else np.zeros(0)
    return float(np.median(y)) if y.size else None


def ground_plane_distance_m(bottom_px: np.ndarray, p2: np.ndarray, camera_height_m: float,
                            car_length_m: float) -> np.ndarray:
    """Distance (camera z, m) of a car from its 2D box's bottom edge, assuming flat ground.

    A ground point at depth Z (y = ``camera_height_m`` below camera 0) projects with the
    rectified ``P2 = [[fx, 0, cx, tx], [0, fy, cy, ty], [0, 0, 1, tz]]`` to
    ``v = (fy·h + cy·Z + ty) / (Z + tz)``, so ``Z = (fy·h + ty − v·tz) / (v − cy)``; that is the
    near face of the car, and ``car_length_m / 2`` is added for its centre. A bottom edge at or
    above the horizon (``v <= cy``) gives ``+inf``.
    """
    v = np.asarray(bottom_px, dtype=np.float64)
    fy, cy, ty, tz = p2[1, 1], p2[1, 2], p2[1, 3], p2[2, 3]
    below = v > cy
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (fy * camera_height_m + ty - v * tz) / (v - cy)
    return np.where(below, z + car_length_m / 2.0, np.inf)


def slice_tables(gts: Sequence[kitti_ap.Objects], dets: Sequence[kitti_ap.Objects], gt_distance_m: Sequence[np.ndarray],
                 det_distance_m: Sequence[np.ndarray], edges_m: Sequence[float], cls: str = "Car") -> dict[str, ApTable]:
    """:class:`ApTable` of every slice: ``"all"``, ``"distance/<bin>"``, ``"occlusion/<level>"``.

    ``gts``/``dets`` aligned per image (:class:`kitti_ap.Objects`); ``gt_distance_m`` per image
    (N,) from :func:`object_distance_m`; ``det_distance_m`` per image (M,) estimated
    (:func:`ground_plane_distance_m`). One devkit matching per image (no height rule; IoU > 0.7
    for Car) serves every slice: only which ground truth counts and which unmatched detections
    are FPs differ (:func:`kitti_ap.level_statistics`).
    """
    neighbour, min_overlap = kitti_ap.CLASS_RULES[cls]
    names = bin_names(edges_m)
    keys = ["all"] + [f"distance/{n}" for n in names] + [f"occlusion/{o}" for o in OCCLUSION_LEVELS]
    parts: dict[str, list] = {k: [] for k in keys}
    n_gt: dict[str, list] = {k: [] for k in keys}
    empty = (np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    for gt, det, gd, dd, im in zip(gts, dets, gt_distance_m, det_distance_m, kitti_ap._prepare(gts, dets)):
        gtype = gt.type.astype(str)
        is_cls = gtype == cls
        base = is_cls & (gt.occluded <= MAX_OCCLUSION) & (gt.truncated <= MAX_TRUNCATION)
        matchable = is_cls | ((gtype == neighbour) if neighbour else np.zeros(len(gt), bool))
        ig_match = np.where(matchable, 1, -1).astype(np.int64)
        idt = np.where(det.type.astype(str) == cls, 0, -1).astype(np.int64)
        gbin = assign_bins(gd, edges_m)
        dbin = assign_bins(dd, edges_m)
        counted = {"all": base}
        dmask = {"all": None}
        for k, n in enumerate(names):
            counted[f"distance/{n}"] = base & (gbin == k)
            dmask[f"distance/{n}"] = dbin == k
        for o in OCCLUSION_LEVELS:
            counted[f"occlusion/{o}"] = base & (gt.occluded == o)
            dmask[f"occlusion/{o}"] = None
        useful = matchable.any() or (idt == 0).any()
        if useful:
            match = kitti_ap.match_levels(im.iou, im.dc_overlap, im.score, ig_match, idt, min_overlap)
        for key in keys:
            ig = np.where(counted[key], 0, ig_match).astype(np.int64)
            n_gt[key].append(int(counted[key].sum()))
            if not useful:
                parts[key].append(empty)
                continue
            parts[key].append((match[0], *kitti_ap.level_statistics(*match, im.score, ig, idt, dmask[key])))
    return {k: build_ap_table(n_gt[k], *zip(*parts[k])) if parts[k] else build_ap_table([], [], [], [], [])
            for k in keys}
