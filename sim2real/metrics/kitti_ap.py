"""The official KITTI 2D object detection metric (AP|R40 and AP|R11), following the devkit.

A re-implementation of the rules of ``evaluate_object.cpp`` of the KITTI object devkit (2D
image boxes only), decision for decision, including its quirks:

* Classes Car, Pedestrian, Cyclist; a match needs IoU *strictly* greater than 0.7 (Car) or
  0.5 (Pedestrian, Cyclist).
* Difficulties are cumulative: Easy / Moderate / Hard keep ground truth with box height
  ``> 40 / 25 / 25`` px (the 2019 R40 devkit ignores ``height <= MIN_HEIGHT``, so a box exactly
  40.00 px tall is not Easy and one exactly 25.00 px tall is not Moderate; older 2D-only copies
  used ``<``), occlusion ``<= 0 / 1 / 2`` and truncation ``<= 0.15 / 0.30 / 0.50``. Ground truth of
  the class outside the difficulty is *ignored*: neither TP nor FN, and a detection matched to
  it is not an FP. The neighbour class is ignored the same way (Van for Car, Person_sitting for
  Pedestrian); every other class is skipped entirely (a Car detection on a Truck is an FP).
* Detections shorter than the difficulty's min height are ignored (``height < min``: a detection
  exactly 40 px tall counts at Easy); as in the devkit the detection height is truncated to an
  integer first (``int32_t height = fabs(y1 - y2)``), the ground-truth height is not.
* An unmatched detection whose intersection with a DontCare region exceeds the class's overlap
  threshold *of the detection's own area* is not an FP.
* Precision is sampled at 41 recall positions by choosing score thresholds from the true
  positives (``getThresholds``), interpolated as the max over all higher positions.
  AP|R40 = mean of positions 1..40 (official since October 2019); AP|R11 = mean of positions
  0, 4, ..., 40 (the original metric, used by older papers).

Consequence of the devkit's threshold sampling, replicated on purpose: there is at most one
threshold per true positive, and position ``i`` of the 41 is filled by the ``i``-th threshold,
so with ``n`` ground-truth objects even perfect detections fill only ``min(n, 41)`` positions.
Perfect detections therefore score 100 only with at least 41 ground-truth objects; with exactly
40 they score AP|R40 = 97.5 and AP|R11 = 90.9, and with one object AP|R40 = 0 and
AP|R11 = 100/11 = 9.09.

Departures from the devkit, both for robustness on small sets: a class is evaluated even when
no detection of it exists (AP 0 rather than no output), and a class/difficulty without any
counted ground truth yields ``None`` (the devkit divides by zero).

The image set is the ground-truth folder's ``*.txt`` files; every one needs a result file of
the same name in the detection folder (possibly empty), as the devkit requires.

Command line::

    python -m sim2real.metrics.kitti_ap GT_DIR DET_DIR [--classes Car,Pedestrian] [--json]

References
----------
Geiger, Lenz, Urtasun, "Are we ready for autonomous driving? The KITTI vision benchmark suite",
CVPR 2012; the KITTI object devkit (``cpp/evaluate_object.cpp``, R40 update of 08.10.2019);
Simonelli et al., "Disentangling Monocular 3D Object Detection", ICCV 2019 (why R40).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from sim2real.errors import ConfigError, DataError
from sim2real.formats import kitti

DIFFICULTIES = ("easy", "moderate", "hard")
MIN_HEIGHT_PX = (40.0, 25.0, 25.0)
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.30, 0.50)
N_SAMPLE_PTS = 41
#: evaluated class -> (neighbour class that is ignored, minimum IoU for a match; strict ">")
CLASS_RULES: dict[str, tuple[str | None, float]] = {
    "Car": ("Van", 0.7),
    "Pedestrian": ("Person_sitting", 0.5),
    "Cyclist": (None, 0.5),
}
DEFAULT_CLASSES = ("Car", "Pedestrian", "Cyclist")


@dataclass(frozen=True)
class Objects:
    """The objects of one image (ground truth or detections), as arrays.

    Attributes
    ----------
    type : (N,) object array of KITTI type names.
    box_px : (N, 4) float64 ``left, top, right, bottom`` in pixels.
    truncated : (N,) float64 in [0, 1] (detections: ignored).
    occluded : (N,) int64 0..3 (detections: ignored).
    score : (N,) float64 confidence (ground truth: zeros).
    """

    type: np.ndarray
    box_px: np.ndarray
    truncated: np.ndarray
    occluded: np.ndarray
    score: np.ndarray

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> "Objects":
        """From :func:`sim2real.formats.kitti.read_label` output (``score`` column optional)."""
        n = len(df)
        box = df[["left", "top", "right", "bottom"]].to_numpy(dtype=np.float64).reshape(n, 4)
        score = df["score"].to_numpy(dtype=np.float64) if "score" in df.columns else np.zeros(n)
        return cls(type=df["type"].to_numpy(dtype=object), box_px=box,
                   truncated=df["truncated"].to_numpy(dtype=np.float64),
                   occluded=df["occluded"].to_numpy(dtype=np.int64), score=score)

    @classmethod
    def make(cls, types: Sequence[str], boxes_px, truncated=None, occluded=None, score=None) -> "Objects":
        """Build from plain sequences (tests, in-memory predictions)."""
        n = len(types)
        box = np.asarray(boxes_px, dtype=np.float64).reshape(n, 4)
        z = np.zeros(n)
        return cls(type=np.asarray(list(types), dtype=object), box_px=box,
                   truncated=z.copy() if truncated is None else np.asarray(truncated, dtype=np.float64),
                   occluded=np.zeros(n, np.int64) if occluded is None else np.asarray(occluded, dtype=np.int64),
                   score=z.copy() if score is None else np.asarray(score, dtype=np.float64))

    def __len__(self) -> int:
        return len(self.type)


def box_overlap(a_px: np.ndarray, b_px: np.ndarray, criterion: str = "union") -> np.ndarray:
    """Pairwise overlap of boxes ``a`` (N, 4) and ``b`` (M, 4), ``left, top, right, bottom`` px.

    ``criterion="union"``: intersection over union; ``"a"``: intersection over the area of
    ``a`` (the devkit's criterion 0, used for DontCare). No +1 pixel convention (as the devkit's
    ``imageBoxOverlap``). Returns (N, M) float64; 0 where the boxes do not overlap.
    """
    a = np.asarray(a_px, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b_px, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    valid = (iw > 0) & (ih > 0)
    inter = np.where(valid, iw * ih, 0.0)
    area_a = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None]
    if criterion == "union":
        area_b = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None, :]
        denom = area_a + area_b - inter
    elif criterion == "a":
        denom = np.broadcast_to(area_a, inter.shape)
    else:
        raise ValueError(f"criterion must be 'union' or 'a', got {criterion!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(valid, inter / denom, 0.0)
    return out


def clean_data(gt: Objects, det: Objects, cls: str, difficulty: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The devkit's ``cleanData`` for one image.

    Returns ``ignored_gt`` (N,) int: 0 counted, 1 ignored (neighbour class or outside the
    difficulty), -1 other class; ``ignored_det`` (M,) int: 0 counted, 1 too short, -1 other
    class; and the number of counted ground-truth objects.
    """
    neighbour, _ = CLASS_RULES[cls]
    gt_type = np.char.lower(gt.type.astype(str)) if len(gt) else np.zeros(0, dtype=str)
    valid = np.full(len(gt), -1, dtype=np.int64)
    valid[gt_type == cls.lower()] = 1
    if neighbour is not None:
        valid[gt_type == neighbour.lower()] = 0
    height = gt.box_px[:, 3] - gt.box_px[:, 1]
    outside = ((gt.occluded > MAX_OCCLUSION[difficulty]) | (gt.truncated > MAX_TRUNCATION[difficulty])
               | (height <= MIN_HEIGHT_PX[difficulty]))  # devkit 2019: height<=MIN_HEIGHT
    ignored_gt = np.full(len(gt), -1, dtype=np.int64)
    ignored_gt[(valid == 1) & ~outside] = 0
    ignored_gt[(valid == 0) | ((valid == 1) & outside)] = 1
    n_gt = int(np.sum(ignored_gt == 0))

    det_type = np.char.lower(det.type.astype(str)) if len(det) else np.zeros(0, dtype=str)
    det_height = np.trunc(np.abs(det.box_px[:, 1] - det.box_px[:, 3]))  # devkit: int32_t height
    ignored_det = np.where(det_type == cls.lower(), 0, -1).astype(np.int64)
    ignored_det[det_height < MIN_HEIGHT_PX[difficulty]] = 1
    return ignored_gt, ignored_det, n_gt


@dataclass
class _Image:
    """Per-image, per-class precomputation: overlaps and ignore flags per difficulty."""

    iou: np.ndarray          # (N gt, M det)
    dc_overlap: np.ndarray   # (M det, K dontcare): intersection / det area
    score: np.ndarray        # (M,)


def compute_statistics(iou: np.ndarray, dc_overlap: np.ndarray, score: np.ndarray, ignored_gt: np.ndarray,
                       ignored_det: np.ndarray, min_overlap: float, compute_fp: bool,
                       thresh: float = 0.0) -> tuple[int, int, int, list[float]]:
    """The devkit's ``computeStatistics`` for one image: (tp, fp, fn, scores of the TPs).

    ``iou`` (N gt, M det); ``dc_overlap`` (M det, K DontCare) intersection over detection area;
    ``compute_fp=False`` is the first pass that collects TP scores for threshold selection.
    """
    n_det = len(score)
    assigned = np.zeros(n_det, dtype=bool)
    below = score < thresh if compute_fp else np.zeros(n_det, dtype=bool)
    usable = (ignored_det != -1) & ~below
    tp = fp = fn = 0
    tp_scores: list[float] = []
    for i in range(len(ignored_gt)):
        if ignored_gt[i] == -1:
            continue
        cand = usable & ~assigned & (iou[i] > min_overlap)
        det_idx = -1
        if cand.any():
            if not compute_fp:
                # highest score, first on ties (strict ">" against the running best)
                idx = np.flatnonzero(cand)
                det_idx = int(idx[np.argmax(score[idx])])
            else:
                counted = cand & (ignored_det == 0)
                if counted.any():  # greatest overlap among counted detections, first on ties
                    idx = np.flatnonzero(counted)
                    det_idx = int(idx[np.argmax(iou[i, idx])])
                else:              # else the first too-short detection
                    det_idx = int(np.flatnonzero(cand)[0])
        if det_idx < 0:
            if ignored_gt[i] == 0:
                fn += 1
        elif ignored_gt[i] == 1 or ignored_det[det_idx] == 1:
            assigned[det_idx] = True
        else:
            tp += 1
            tp_scores.append(float(score[det_idx]))
            assigned[det_idx] = True
    if compute_fp:
        fp = int(np.sum(~assigned & (ignored_det == 0) & ~below))
        nstuff = 0
        for k in range(dc_overlap.shape[1]):
            hit = ~assigned & (ignored_det == 0) & ~below & (dc_overlap[:, k] > min_overlap)
            assigned |= hit
            nstuff += int(hit.sum())
        fp -= nstuff
    return tp, fp, fn, tp_scores


def match_levels(iou: np.ndarray, dc_overlap: np.ndarray, score: np.ndarray, ignored_gt: np.ndarray,
                 ignored_det: np.ndarray, min_overlap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`compute_statistics` of one image at every score threshold at once (its assignments).

    The devkit's matching at threshold ``t`` depends only on which detections score ``>= t``, so
    it changes only at the image's own scores. For the distinct scores ``s_1 > ... > s_L`` of the
    detections with ``ignored_det != -1`` this returns

    * ``levels`` (L,): those scores, descending;
    * ``assigned_gt`` (L, M) int: at threshold ``s_k``, the ground-truth index detection ``j`` was
      assigned to in the ``compute_fp=True`` pass, -1 if none (below the threshold, other class,
      or unmatched);
    * ``dc_hit`` (M,) bool: the detection overlaps a DontCare region by more than ``min_overlap``
      of its own area (an unmatched counted detection above the threshold there is not an FP);
    * ``first_pass_gt`` (M,) int: the assignment of the ``compute_fp=False`` pass (highest score
      among candidates, no threshold), whose true positives give the threshold scores.

    From these, TP at ``s_k`` = detections with ``ignored_det == 0`` assigned to ground truth with
    ``ignored_gt == 0``; FP = detections with ``ignored_det == 0``, score ``>= s_k``, unassigned and
    not ``dc_hit`` — exactly :func:`compute_statistics` (a test checks every level). The loop runs
    over ground truth (as the devkit's), vectorised over levels.
    """
    n_gt, n_det = len(ignored_gt), len(score)
    ok = ignored_det != -1
    levels = np.unique(score[ok])[::-1]
    L = len(levels)
    usable = ok[None, :] & (score[None, :] >= levels[:, None])            # (L, M)
    assigned = np.zeros((L, n_det), dtype=bool)
    assigned_gt = np.full((L, n_det), -1, dtype=np.int64)
    first = np.full(n_det, -1, dtype=np.int64)
    taken = np.zeros(n_det, dtype=bool)
    rows = np.arange(L)
    counted_det = ignored_det == 0
    for i in range(n_gt):
        if ignored_gt[i] == -1:
            continue
        over = iou[i] > min_overlap                                        # (M,)
        # compute_fp=False: the highest-scoring candidate (first on ties), no threshold
        c1 = ok & ~taken & over
        if c1.any():
            idx = np.flatnonzero(c1)
            j = int(idx[np.argmax(score[idx])])
            first[j] = i
            taken[j] = True
        # compute_fp=True at every level: the greatest overlap among counted detections (first on
        # ties), else the first too-short detection
        cand = usable & ~assigned & over[None, :]
        if not cand.any():
            continue
        counted = cand & counted_det[None, :]
        best = np.argmax(np.where(counted, iou[i][None, :], -1.0), axis=1)
        first_any = np.argmax(cand, axis=1)
        det_idx = np.where(counted.any(axis=1), best, np.where(cand.any(axis=1), first_any, -1))
        hit = det_idx >= 0
        assigned[rows[hit], det_idx[hit]] = True
        assigned_gt[rows[hit], det_idx[hit]] = i
    dc_hit = (dc_overlap > min_overlap).any(axis=1) if dc_overlap.size else np.zeros(n_det, dtype=bool)
    return levels, assigned_gt, dc_hit, first


def level_statistics(levels: np.ndarray, assigned_gt: np.ndarray, dc_hit: np.ndarray, first_pass_gt: np.ndarray,
                     score: np.ndarray, ignored_gt: np.ndarray, ignored_det: np.ndarray,
                     det_counts_fp: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TP and FP at every level of :func:`match_levels`, and the first pass's TP scores.

    ``ignored_gt`` may differ from the one the matching ran with in its 0/1 entries (the
    matching depends only on which entries are -1): that is how one matching serves several
    slices of the ground truth. ``det_counts_fp`` (M,) bool, default all: an unmatched detection
    is an FP only where it is True (used to assign unmatched detections to a distance bin).
    Returns ``tp`` (L,), ``fp`` (L,) int64 and the TP scores (unsorted).
    """
    counted_det = ignored_det == 0
    safe = np.where(assigned_gt >= 0, assigned_gt, 0)
    gt_counted = (ignored_gt == 0)[safe] & (assigned_gt >= 0) if len(ignored_gt) else np.zeros_like(assigned_gt, bool)
    tp = np.sum(gt_counted & counted_det[None, :], axis=1)
    free = counted_det & ~dc_hit
    if det_counts_fp is not None:
        free = free & det_counts_fp
    usable = score[None, :] >= levels[:, None]
    fp = np.sum(usable & (assigned_gt < 0) & free[None, :], axis=1)
    f = first_pass_gt
    hit = (f >= 0) & counted_det
    if hit.any():
        hit[hit] = ignored_gt[f[hit]] == 0
    return tp.astype(np.int64), fp.astype(np.int64), score[hit]


def get_thresholds(tp_scores: Sequence[float], n_gt: int, n_sample_pts: int = N_SAMPLE_PTS) -> list[float]:
    """The devkit's ``getThresholds``: TP scores closest to linearly spaced recall steps."""
    v = sorted((float(s) for s in tp_scores), reverse=True)
    out: list[float] = []
    current = 0.0
    for i, s in enumerate(v):
        l_recall = (i + 1) / n_gt
        r_recall = (i + 2) / n_gt if i < len(v) - 1 else l_recall
        if (r_recall - current) < (current - l_recall) and i < len(v) - 1:
            continue
        out.append(s)
        current += 1.0 / (n_sample_pts - 1.0)
    return out


def _prepare(gts: Sequence[Objects], dets: Sequence[Objects]) -> list[_Image]:
    out = []
    for gt, det in zip(gts, dets):
        dc = gt.box_px[np.char.lower(gt.type.astype(str)) == "dontcare"] if len(gt) else np.zeros((0, 4))
        out.append(_Image(iou=box_overlap(gt.box_px, det.box_px), dc_overlap=box_overlap(det.box_px, dc, "a"),
                          score=det.score))
    return out


def precision_curve(gts: Sequence[Objects], dets: Sequence[Objects], cls: str, difficulty: int,
                    _prepared: list[_Image] | None = None) -> tuple[np.ndarray, int]:
    """Interpolated precision at the 41 recall positions (devkit ``eval_class``) and n_gt.

    ``gts`` and ``dets`` are aligned lists, one :class:`Objects` per image.
    """
    if cls not in CLASS_RULES:
        raise ConfigError(f"KITTI class must be one of {', '.join(CLASS_RULES)}, got '{cls}'")
    if len(gts) != len(dets):
        raise ValueError(f"{len(gts)} ground-truth images but {len(dets)} detection images")
    _, min_overlap = CLASS_RULES[cls]
    prepared = _prepared if _prepared is not None else _prepare(gts, dets)
    flags = []
    n_gt = 0
    v: list[float] = []
    for gt, det, im in zip(gts, dets, prepared):
        ig, idt, n = clean_data(gt, det, cls, difficulty)
        flags.append((ig, idt))
        n_gt += n
        v += compute_statistics(im.iou, im.dc_overlap, im.score, ig, idt, min_overlap, compute_fp=False)[3]
    precision = np.zeros(N_SAMPLE_PTS)
    if n_gt == 0:
        return precision, 0
    thresholds = get_thresholds(v, n_gt)[:N_SAMPLE_PTS]
    tp = np.zeros(len(thresholds), np.int64)
    fp = np.zeros(len(thresholds), np.int64)
    for (ig, idt), im in zip(flags, prepared):
        if not (ig != -1).any() and not (idt == 0).any():
            continue  # nothing of this class in the image: contributes nothing at any threshold
        for t, thresh in enumerate(thresholds):
            a, b, _, _ = compute_statistics(im.iou, im.dc_overlap, im.score, ig, idt, min_overlap, True, thresh)
            tp[t] += a
            fp[t] += b
    for t in range(len(thresholds)):
        precision[t] = tp[t] / (tp[t] + fp[t]) if tp[t] + fp[t] > 0 else 0.0
    for t in range(len(thresholds)):
        precision[t] = precision[t:].max()
    return precision, n_gt


def ap_r40(precision: np.ndarray) -> float:
    """AP|R40 in percent: mean precision at recall positions 1..40 of 41."""
    return float(np.sum(precision[1:N_SAMPLE_PTS]) / 40.0 * 100.0)


def ap_r11(precision: np.ndarray) -> float:
    """AP|R11 in percent: mean precision at recall positions 0, 4, ..., 40 of 41."""
    return float(np.sum(precision[0:N_SAMPLE_PTS:4]) / 11.0 * 100.0)


def evaluate(gts: Sequence[Objects], dets: Sequence[Objects],
             classes: Sequence[str] = DEFAULT_CLASSES) -> dict[str, dict[str, float | None]]:
    """KITTI 2D AP in percent per class: ``{"Car": {"easy", "moderate", "hard", "easy_R11", ...,
    "n_gt_easy", ...}}``; AP is ``None`` where a difficulty has no counted ground truth.

    ``gts``/``dets``: aligned lists (one :class:`Objects` per image). Ground truth needs type,
    box, truncated, occluded (DontCare rows included); detections need type, box and score.
    """
    for c in classes:
        if c not in CLASS_RULES:
            raise ConfigError(f"KITTI class must be one of {', '.join(CLASS_RULES)}, got '{c}'")
    prepared = _prepare(gts, dets)
    out: dict[str, dict[str, float | None]] = {}
    for c in classes:
        res: dict[str, float | None] = {}
        for d, name in enumerate(DIFFICULTIES):
            precision, n_gt = precision_curve(gts, dets, c, d, _prepared=prepared)
            res[name] = ap_r40(precision) if n_gt else None
            res[f"{name}_R11"] = ap_r11(precision) if n_gt else None
            res[f"n_gt_{name}"] = n_gt
        out[c] = res
    return out


def read_ground_truth(gt_dir: str | Path) -> tuple[list[str], list[pd.DataFrame]]:
    """Image ids (sorted ``GT_DIR/*.txt`` stems) and their label tables (all 15 fields)."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise DataError(gt_dir, "ground-truth label folder not found")
    ids = sorted(p.stem for p in gt_dir.glob("*.txt"))
    if not ids:
        raise DataError(gt_dir, "no *.txt label files")
    return ids, [kitti.read_label(gt_dir / f"{image_id}.txt") for image_id in ids]


def read_results(det_dir: str | Path, ids: Sequence[str]) -> list[pd.DataFrame]:
    """The result file ``DET_DIR/<id>.txt`` of every id (must exist, possibly empty; 16 fields)."""
    det_dir = Path(det_dir)
    if not det_dir.is_dir():
        raise DataError(det_dir, "detection result folder not found")
    out = []
    for image_id in ids:
        det_path = det_dir / f"{image_id}.txt"
        if not det_path.is_file():
            raise DataError(det_path, "result file missing (the devkit needs one per ground-truth file; write an empty file for no detections)")
        det_df = kitti.read_label(det_path)
        if len(det_df) and "score" not in det_df.columns:
            raise DataError(det_path, "result lines need a 16th field, score")
        out.append(det_df)
    return out


def read_folders(gt_dir: str | Path, det_dir: str | Path) -> tuple[list[str], list[Objects], list[Objects]]:
    """Read every ``GT_DIR/*.txt`` and the same-named ``DET_DIR`` result file (must exist)."""
    if not Path(gt_dir).is_dir():
        raise DataError(gt_dir, "ground-truth label folder not found")
    if not Path(det_dir).is_dir():
        raise DataError(det_dir, "detection result folder not found")
    ids, gt_dfs = read_ground_truth(gt_dir)
    dets = [Objects.from_frame(df) for df in read_results(det_dir, ids)]
    return ids, [Objects.from_frame(df) for df in gt_dfs], dets


def evaluate_folders(gt_dir: str | Path, det_dir: str | Path,
                     classes: Sequence[str] = DEFAULT_CLASSES) -> dict[str, dict[str, float | None]]:
    """:func:`evaluate` over two KITTI label folders (ground truth, results)."""
    _, gts, dets = read_folders(gt_dir, det_dir)
    return evaluate(gts, dets, classes)


def format_table(result: dict[str, dict[str, float | None]]) -> str:
    """Human-readable table: one line per class and metric, like the devkit's output."""
    def f(x):
        return "   n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:6.2f}"
    lines = [f"{'class':<12}{'metric':<8}{'easy':>8}{'moderate':>10}{'hard':>8}"]
    for c, r in result.items():
        for tag, suffix in (("AP|R40", ""), ("AP|R11", "_R11")):
            lines.append(f"{c:<12}{tag:<8}{f(r['easy' + suffix]):>8}{f(r['moderate' + suffix]):>10}{f(r['hard' + suffix]):>8}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim2real.metrics.kitti_ap",
                                 description="Official KITTI 2D detection AP (R40 and R11) over two label folders.")
    ap.add_argument("gt_dir", help="folder of KITTI label files (ground truth, DontCare rows included)")
    ap.add_argument("det_dir", help="folder of KITTI result files (16 fields, last = score), same names")
    ap.add_argument("--classes", default=",".join(DEFAULT_CLASSES), help="comma-separated, from Car,Pedestrian,Cyclist")
    ap.add_argument("--json", action="store_true", help="print JSON (percent) instead of a table")
    args = ap.parse_args(argv)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    try:
        result = evaluate_folders(args.gt_dir, args.det_dir, classes)
    except (DataError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
