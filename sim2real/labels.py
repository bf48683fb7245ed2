"""Label clean-up for Virtual KITTI 2 boxes (dedupe rules) and class maps.

vKITTI2's bbox.txt lists, besides the objects one would label by hand: both cameras in one file,
objects with no visible pixel, boxes a few pixels wide, and (seen by the seed team) the same box
under two classes. :func:`dedupe` applies documented, param-driven rules and returns every input
row exactly once, either kept or dropped with a ``reason``.

Rules, in order (a row gets the first reason that applies):

=====================  ==========================================================================
reason                 rule
=====================  ==========================================================================
other_camera           ``cameraID`` is not ``rules['camera']`` (skipped when camera is None)
hidden                 ``number_pixels == 0`` (fully occluded: nothing to detect)
sliver                 box height < ``min_height_px`` or width < ``min_width_px`` (``right-left``)
low_visibility         ``0 < number_pixels < min_visible_px``
truncated              ``truncation_ratio > max_truncation``
class_not_in_classes   label not listed in ``classes`` (Van is never silently mapped to Car)
class_conflict         same box (IoU >= ``same_box_iou``) listed under another class; policy
                       ``more_pixels`` keeps the row with more visible pixels (ties: lower
                       trackID), ``drop_both`` drops every row of the conflict
duplicate              same class, IoU >= ``merge_iou`` with a row that has more visible pixels
=====================  ==========================================================================
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from sim2real.errors import ConfigError

DEFAULT_RULES: dict = {
    "camera": 0,
    "min_visible_px": 25,
    "min_height_px": 6,
    "min_width_px": 6,
    "max_truncation": 0.8,
    "class_conflict": "more_pixels",
    "same_box_iou": 0.95,
    "merge_iou": 0.85,
    "classes": ["Car", "Van", "Truck"],
}
REASONS = ("other_camera", "hidden", "sliver", "low_visibility", "truncated", "class_not_in_classes",
           "class_conflict", "duplicate")
GROUP_KEYS = ("scene", "variation", "frame", "cameraID")


def iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """IoU between (N, 4) boxes (left, top, right, bottom), areas as (right-left)*(bottom-top)."""
    l, t, r, b = boxes.T.astype(np.float64)
    area = np.clip(r - l, 0, None) * np.clip(b - t, 0, None)
    iw = np.clip(np.minimum(r[:, None], r[None]) - np.maximum(l[:, None], l[None]), 0, None)
    ih = np.clip(np.minimum(b[:, None], b[None]) - np.maximum(t[:, None], t[None]), 0, None)
    inter = iw * ih
    union = area[:, None] + area[None] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def resolve_rules(rules: Mapping | None) -> dict:
    out = dict(DEFAULT_RULES)
    if rules:
        unknown = set(rules) - set(DEFAULT_RULES)
        if unknown:
            raise ConfigError(f"dedupe: unknown rule(s) {sorted(unknown)}; known: {sorted(DEFAULT_RULES)}")
        out.update(rules)
    if out["class_conflict"] not in ("more_pixels", "drop_both"):
        raise ConfigError(f"dedupe.class_conflict must be more_pixels or drop_both, got {out['class_conflict']!r}")
    return out


def _pairwise(group: pd.DataFrame, r: dict) -> dict[int, str]:
    """Reasons for rows of one frame dropped by the conflict/duplicate rules: {index: reason}."""
    if len(group) < 2:
        return {}
    order = group.sort_values(["number_pixels", "trackID"], ascending=[False, True])
    idx = order.index.to_numpy()
    boxes = order[["left", "top", "right", "bottom"]].to_numpy()
    labels = order["label"].to_numpy()
    iou = iou_matrix(boxes)
    out: dict[int, str] = {}
    for i in range(len(idx)):  # rows in priority order: more pixels first
        if idx[i] in out:
            continue
        for j in range(i + 1, len(idx)):
            if idx[j] in out:
                continue
            if labels[i] != labels[j] and iou[i, j] >= r["same_box_iou"]:
                out[idx[j]] = "class_conflict"
                if r["class_conflict"] == "drop_both":
                    out[idx[i]] = "class_conflict"
            elif labels[i] == labels[j] and iou[i, j] >= r["merge_iou"]:
                out[idx[j]] = "duplicate"
    return out


def dedupe(boxes: pd.DataFrame, rules: Mapping | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split vKITTI2 boxes into (kept, dropped).

    Parameters
    ----------
    boxes : :func:`sim2real.formats.vkitti2.read_bbox` output with a ``label`` column joined
        from :func:`~sim2real.formats.vkitti2.read_info` (optionally scene/variation columns).
    rules : overrides of :data:`DEFAULT_RULES` (the defaults shipped in params.yaml).

    Returns
    -------
    kept : input rows that survive, plus ``class_id`` (index into ``rules['classes']``).
    dropped : the other input rows, plus ``reason`` (one of :data:`REASONS`).
    Every input row is in exactly one of the two.
    """
    r = resolve_rules(rules)
    missing = {"frame", "cameraID", "trackID", "left", "right", "top", "bottom", "number_pixels",
               "truncation_ratio", "label"} - set(boxes.columns)
    if missing:
        raise ValueError(f"dedupe: boxes lack columns {sorted(missing)}")
    df = boxes.reset_index(drop=True)
    reason = pd.Series("", index=df.index, dtype=object)

    def mark(mask, name):
        reason[(reason == "") & mask] = name

    if r["camera"] is not None:
        mark(df["cameraID"] != int(r["camera"]), "other_camera")
    mark(df["number_pixels"] == 0, "hidden")
    mark(((df["bottom"] - df["top"]) < r["min_height_px"]) | ((df["right"] - df["left"]) < r["min_width_px"]), "sliver")
    mark(df["number_pixels"] < int(r["min_visible_px"]), "low_visibility")
    mark(df["truncation_ratio"] > float(r["max_truncation"]), "truncated")
    mark(~df["label"].isin(list(r["classes"])), "class_not_in_classes")
    alive = df[reason == ""]
    keys = [k for k in GROUP_KEYS if k in df.columns]
    for _, group in alive.groupby(keys, sort=False):
        for i, why in _pairwise(group, r).items():
            reason[i] = why
    kept = df[reason == ""].copy()
    kept["class_id"] = kept["label"].map({c: i for i, c in enumerate(r["classes"])}).astype(int)
    dropped = df[reason != ""].copy()
    dropped["reason"] = reason[reason != ""]
    return kept, dropped


def count_reasons(dropped: pd.DataFrame) -> dict[str, int]:
    counts = dropped["reason"].value_counts()
    return {name: int(counts.get(name, 0)) for name in REASONS}


def class_ids(labels: Sequence[str], classes: Sequence[str]) -> list[int]:
    lookup = {c: i for i, c in enumerate(classes)}
    return [lookup[label] for label in labels]
