"""Image bootstrap of detection metrics: percentile intervals over the val images, cheap by design.

A bootstrap resample draws ``n`` val images with replacement; image ``i`` then appears ``w_i``
times (``w`` = one row of :func:`resample_counts`), and a metric of the resample is the metric of
the concatenation of those images. Every metric here is computed from per-image statistics
gathered once, so a resample is a weighted sum over images, not a re-matching of boxes:

* **KITTI AP|R40** (:class:`ApTable`, :func:`ap_r40_resampled`). The devkit's matching at a
  score threshold depends only on which of an image's own detections pass it
  (:func:`sim2real.metrics.kitti_ap.match_levels`), so per image it is a step function of the
  threshold: we store its TP/FP increments at the image's own scores (*events*) and the
  first-pass TP scores that define the thresholds. For weights ``w``: ``n_gt = w · n_gt_i``;
  the devkit's ``getThresholds`` over the weighted TP-score list is evaluated in closed form
  (the ``k``-th push is the first element whose recall midpoint reaches ``k/40``, with the
  devkit's floating-point comparison, see :func:`_push_positions`); TP and FP at each
  threshold are cumulative weighted sums of the events (a sparse matrix product).
  With ``w = 1`` the result equals :func:`sim2real.metrics.kitti_ap.evaluate` exactly (a test).
* **mAP50** (:class:`Map50Table`, :func:`map50_resampled`): ultralytics' ``ap_per_class`` at
  IoU 0.5 on the concatenated detections of the resample, sorted by confidence (a detection of
  an image drawn twice appears twice, consecutively), with ultralytics' own ``compute_ap``
  (101-point COCO interpolation); mean over the classes that have labels in the resample.
  Per-image TP flags come from ultralytics' greedy matching (:func:`match_iou50`, checked
  against ``DetectionValidator.match_predictions`` in the tests).

Intervals are percentile intervals (Efron & Tibshirani 1993, ch. 13) of the resampled values;
the same ``counts`` matrix serves every variant, so differences between variants (and the gap
closure of :mod:`sim2real.metrics.study`) are paired.

References
----------
Efron, Tibshirani, *An Introduction to the Bootstrap*, 1993; the KITTI object devkit
(``evaluate_object.cpp``); ultralytics ``utils/metrics.py`` (``ap_per_class``, ``compute_ap``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from sim2real.metrics import kitti_ap

#: resamples processed at once (bounds memory: a chunk holds (U + T) x chunk numbers)
CHUNK = 128


def resample_counts(n_images: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_images) int32: how often each image is drawn in each bootstrap resample.

    Row ``b`` is the histogram of ``n_images`` uniform draws with replacement from a generator
    seeded by ``seed`` (numpy PCG64): the same seed gives the same resamples.
    """
    if n_images <= 0 or n_resamples <= 0:
        raise ValueError(f"need n_images > 0 and n_resamples > 0, got {n_images}, {n_resamples}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_images, size=(n_resamples, n_images))
    flat = idx + (np.arange(n_resamples) * n_images)[:, None]
    return np.bincount(flat.ravel(), minlength=n_resamples * n_images).reshape(n_resamples, n_images).astype(np.int32)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> list[float] | None:
    """Percentile interval ``[lo, hi]`` of the finite resampled values; None when there are none.

    NaN entries (a resample where the metric is undefined, e.g. no ground truth) are dropped.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    a = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(v, [a, 100.0 - a])
    return [float(lo), float(hi)]


# ------------------------------------------------------------------------------- KITTI AP|R40
@dataclass(frozen=True)
class ApTable:
    """Per-image statistics of one (class, ground-truth slice) for AP|R40 under image weights.

    Attributes
    ----------
    n_gt : (n_images,) int64 counted ground truth per image.
    tp_score, tp_image : (T,) first-pass TP scores sorted descending, and their image.
    cand : (U,) distinct TP scores, descending (every threshold of every resample is one).
    tp_cand : (T,) index into ``cand`` of each sorted TP score.
    event_score, event_image, event_tp, event_fp : (E,) per image, the change of its TP and FP
        counts when the threshold drops to ``event_score`` (the image's own scores).
    """

    n_gt: np.ndarray
    tp_score: np.ndarray
    tp_image: np.ndarray
    cand: np.ndarray
    tp_cand: np.ndarray
    event_score: np.ndarray
    event_image: np.ndarray
    event_tp: np.ndarray
    event_fp: np.ndarray

    @property
    def n_images(self) -> int:
        return len(self.n_gt)

    def counts_at(self, threshold: float, counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """TP and FP at one score threshold (detections scoring ``>= threshold``), per resample.

        ``counts`` (B, n_images) weights; None = the full sample (returns shape (1,)).
        """
        w = np.ones((1, self.n_images)) if counts is None else np.asarray(counts, dtype=np.float64)
        keep = self.event_score >= threshold
        tp_i = np.bincount(self.event_image[keep], weights=self.event_tp[keep], minlength=self.n_images)
        fp_i = np.bincount(self.event_image[keep], weights=self.event_fp[keep], minlength=self.n_images)
        return np.rint(w @ tp_i).astype(np.int64), np.rint(w @ fp_i).astype(np.int64)

    def f1_operating_point(self) -> dict:
        """The score threshold maximising F1 = 2TP / (2TP + FP + FN) on the full sample.

        Candidates are every event score; FN = n_gt - TP. Returns ``{"threshold", "f1",
        "recall", "precision"}`` (threshold None when there is no TP at any threshold).
        """
        n_gt = int(self.n_gt.sum())
        if len(self.event_score) == 0 or n_gt == 0:
            return {"threshold": None, "f1": None, "recall": None, "precision": None}
        order = np.argsort(-self.event_score, kind="stable")
        s = self.event_score[order]
        tp = np.cumsum(self.event_tp[order])
        fp = np.cumsum(self.event_fp[order])
        last = np.r_[s[1:] != s[:-1], True]       # the state after every event of a score
        s, tp, fp = s[last], tp[last], fp[last]
        f1 = 2 * tp / np.maximum(2 * tp + fp + (n_gt - tp), 1)
        k = int(np.argmax(f1))                     # the highest threshold on ties
        if tp[k] == 0:
            return {"threshold": None, "f1": 0.0, "recall": 0.0, "precision": None}
        return {"threshold": float(s[k]), "f1": float(f1[k]), "recall": float(tp[k] / n_gt),
                "precision": float(tp[k] / (tp[k] + fp[k]))}


def build_ap_table(n_gt: Sequence[int], levels: Sequence[np.ndarray], tp: Sequence[np.ndarray],
                   fp: Sequence[np.ndarray], tp_scores: Sequence[np.ndarray]) -> ApTable:
    """Assemble an :class:`ApTable` from per-image results of
    :func:`~sim2real.metrics.kitti_ap.level_statistics` (levels descending; tp/fp at each level;
    first-pass TP scores)."""
    ev_s, ev_i, ev_tp, ev_fp, t_s, t_i = [], [], [], [], [], []
    for i, (lv, a, b, v) in enumerate(zip(levels, tp, fp, tp_scores)):
        if len(lv):
            dtp = np.diff(np.r_[0, a])
            dfp = np.diff(np.r_[0, b])
            nz = (dtp != 0) | (dfp != 0)
            ev_s.append(lv[nz]); ev_tp.append(dtp[nz]); ev_fp.append(dfp[nz])
            ev_i.append(np.full(int(nz.sum()), i, dtype=np.int64))
        if len(v):
            t_s.append(np.asarray(v, dtype=np.float64)); t_i.append(np.full(len(v), i, dtype=np.int64))

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
    tp_score, tp_image = cat(t_s, np.float64), cat(t_i, np.int64)
    order = np.argsort(-tp_score, kind="stable")
    tp_score, tp_image = tp_score[order], tp_image[order]
    cand = np.unique(tp_score)[::-1]
    tp_cand = np.searchsorted(-cand, -tp_score, side="left")
    return ApTable(n_gt=np.asarray(n_gt, dtype=np.int64), tp_score=tp_score, tp_image=tp_image, cand=cand,
                   tp_cand=tp_cand, event_score=cat(ev_s, np.float64), event_image=cat(ev_i, np.int64),
                   event_tp=cat(ev_tp, np.int64), event_fp=cat(ev_fp, np.int64))


def _currents() -> np.ndarray:
    """The devkit's ``current_recall`` after k pushes, accumulated exactly as it does (k = 0..41)."""
    c = [0.0]
    for _ in range(kitti_ap.N_SAMPLE_PTS):
        c.append(c[-1] + 1.0 / (kitti_ap.N_SAMPLE_PTS - 1.0))
    return np.array(c)


_CURRENT = _currents()


def _push_positions(n_tp: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    """Indices (into the descending TP-score list) that ``getThresholds`` pushes, per resample.

    ``n_tp``, ``n_gt``: (B,) ints. Returns (B, 41) int64, -1 where fewer than 41 are pushed.
    Element ``i < T - 1`` is pushed at ``k`` pushes so far iff ``(r - c_k) >= (c_k - l)`` with
    ``l = (i+1)/n``, ``r = (i+2)/n`` (devkit doubles); this is monotone in ``i``, so the k-th
    push is ``max(previous + 1, f_k)`` with ``f_k`` the first ``i`` satisfying it, found in a
    small window around ``n·c_k − 1.5``; the last element is always pushed; at most 41 are kept.
    """
    B = len(n_tp)
    K = kitti_ap.N_SAMPLE_PTS
    out = np.full((B, K), -1, dtype=np.int64)
    live = (n_tp > 0) & (n_gt > 0)
    if not live.any():
        return out
    T = n_tp[live].astype(np.int64)[:, None]
    n = n_gt[live].astype(np.float64)[:, None]
    c = _CURRENT[:K][None, :, None]                                  # (1, K, 1)
    est = np.ceil(n * _CURRENT[:K][None, :] - 1.5).astype(np.int64)   # (b, K)
    win = np.maximum(est[:, :, None] + np.arange(-2, 4)[None, None, :], 0)   # (b, K, 6)
    nn = n[:, :, None]
    l = (win + 1) / nn
    r = (win + 2) / nn
    cond = (r - c) >= (c - l)
    if np.any(cond[:, :, 0] & (win[:, :, 0] > 0)) or not np.all(cond[:, :, -1]):
        raise AssertionError("threshold window missed the devkit's boundary")  # cannot happen in float64
    f = np.take_along_axis(win, np.argmax(cond, axis=2)[:, :, None], axis=2)[:, :, 0]
    k = np.arange(K)[None, :]
    pos = k + np.maximum.accumulate(f - k, axis=1)                  # pos_k = max(pos_{k-1} + 1, f_k)
    reach = pos >= T - 1
    first = np.where(reach.any(axis=1), np.argmax(reach, axis=1), K)
    pos = np.where(k == first[:, None], T - 1, pos)
    pos = np.where(k > first[:, None], -1, pos)
    out[live] = pos
    return out


def _precision_resampled(table: ApTable, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, 41) interpolated precision and (B,) n_gt for weight rows ``counts`` (B, n_images)."""
    K = kitti_ap.N_SAMPLE_PTS
    w = np.asarray(counts, dtype=np.int64)
    B = len(w)
    n_gt = w @ table.n_gt
    precision = np.zeros((B, K))
    T, U = len(table.tp_score), len(table.cand)
    if T == 0:
        return precision, n_gt
    keep = table.event_score >= table.cand[-1]
    ev_cand = np.searchsorted(-table.cand, -table.event_score[keep], side="left")
    shape = (U, table.n_images)
    a_tp = sp.csr_matrix((table.event_tp[keep].astype(np.float64), (ev_cand, table.event_image[keep])), shape=shape)
    a_fp = sp.csr_matrix((table.event_fp[keep].astype(np.float64), (ev_cand, table.event_image[keep])), shape=shape)
    for start in range(0, B, CHUNK):
        wc = w[start:start + CHUNK]
        b = len(wc)
        cw = np.cumsum(wc[:, table.tp_image], axis=1)                  # (b, T) weighted TP ranks
        pos = _push_positions(cw[:, -1], n_gt[start:start + b])        # (b, K) expanded indices
        valid = pos >= 0
        off = (np.arange(b, dtype=np.int64) * (int(cw[:, -1].max()) + 1))[:, None]
        flat = (cw + off).ravel()
        p = np.searchsorted(flat, np.where(valid, pos, 0) + off, side="right") - np.arange(b)[:, None] * T
        j = table.tp_cand[np.clip(p, 0, T - 1)]                       # (b, K) candidate index
        wt = wc.T.astype(np.float64)
        tp_c = np.cumsum(a_tp @ wt, axis=0)                            # (U, b)
        fp_c = np.cumsum(a_fp @ wt, axis=0)
        cols = np.broadcast_to(np.arange(b)[:, None], j.shape)
        tp = np.rint(tp_c[j, cols])
        fp = np.rint(fp_c[j, cols])
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = np.where(valid & (tp + fp > 0), tp / (tp + fp), 0.0)
        precision[start:start + b] = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
    return precision, n_gt


def ap_r40_resampled(table: ApTable, counts: np.ndarray) -> np.ndarray:
    """AP|R40 in percent for each weight row of ``counts`` (B, n_images); NaN where n_gt = 0.

    Each row's value is :func:`kitti_ap.ap_r40` of the devkit precision curve of that resample.
    """
    precision, n_gt = _precision_resampled(table, counts)
    return np.array([kitti_ap.ap_r40(p) if n else np.nan for p, n in zip(precision, n_gt)])


def ap_full_sample(table: ApTable) -> dict:
    """AP|R40 and AP|R11 (percent, None without ground truth) and n_gt on the full sample."""
    precision, n_gt = _precision_resampled(table, np.ones((1, table.n_images), dtype=np.int64))
    n = int(n_gt[0])
    return {"ap_r40": kitti_ap.ap_r40(precision[0]) if n else None,
            "ap_r11": kitti_ap.ap_r11(precision[0]) if n else None, "n_gt": n}


# ------------------------------------------------------------------------------------- mAP50
def match_iou50(iou: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """ultralytics' greedy matching at one IoU threshold (``BaseValidator.match_predictions``).

    ``iou`` (labels, detections), zero where classes differ, detections in descending confidence.
    Each detection in turn claims the unclaimed label of greatest IoU (first on ties); it is a TP
    if that IoU is ``>= iou_threshold``. Returns (detections,) bool.
    """
    n_l, n_d = iou.shape
    correct = np.zeros(n_d, dtype=bool)
    if n_l == 0 or n_d == 0:
        return correct
    matched = np.zeros(n_l, dtype=bool)
    for j in np.flatnonzero((iou >= iou_threshold).any(axis=0)):
        available = np.where(matched, 0.0, iou[:, j])
        k = int(np.argmax(available))
        correct[j] = available[k] >= iou_threshold
        matched[k] |= correct[j]
    return correct


def box_iou_eps(a_px: np.ndarray, b_px: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """IoU as ultralytics' ``box_iou``: inter / (area_a + area_b − inter + eps), (N, M)."""
    a = np.asarray(a_px, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b_px, dtype=np.float64).reshape(-1, 4)
    iw = (np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])).clip(0)
    ih = (np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])).clip(0)
    inter = iw * ih
    area_a = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None]
    area_b = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None, :]
    return inter / (area_a + area_b - inter + eps)


@dataclass(frozen=True)
class Map50Table:
    """Per-class TP detections and FP counts between them, for mAP50 under image weights.

    ``classes``: the label classes (ids), in order. Per class (same order), over its detections
    in ultralytics' confidence order (``argsort(-conf)`` over all detections concatenated in
    image order): ``tp_image[c]`` (m,) the image of each TP detection; ``fp_gaps[c]`` sparse
    (m + 1, n_images): false positives per image before the first TP (row 0), between TP ``g``
    and ``g + 1`` (row ``g``), after the last (row m); ``n_label[c]`` (n_images,) int64.
    ``conf``, ``pred_cls``, ``tp``, ``target_cls``: the flat arrays ultralytics' ``ap_per_class``
    takes (image order), for the full-sample value.
    """

    classes: tuple[int, ...]
    tp_image: tuple[np.ndarray, ...]
    fp_gaps: tuple[sp.csr_matrix, ...]
    n_label: tuple[np.ndarray, ...]
    n_images: int
    conf: np.ndarray
    pred_cls: np.ndarray
    tp: np.ndarray
    target_cls: np.ndarray


def build_map50_table(labels: Sequence[tuple[np.ndarray, np.ndarray]],
                      detections: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                      n_classes: int) -> Map50Table:
    """From per-image ``(label_cls (N,), label_box_px (N, 4))`` and ``(det_cls (M,), det_box_px
    (M, 4), det_conf (M,))``: match each image (detections sorted by confidence, stable) with
    :func:`match_iou50` and gather the per-class arrays."""
    n_images = len(labels)
    conf, pcls, tp, img, tcls = [], [], [], [], []
    n_label = np.zeros((n_classes, n_images), np.int64)
    for i, ((lc, lb), (dc, db, ds)) in enumerate(zip(labels, detections)):
        lc = np.asarray(lc, dtype=np.int64)
        dc = np.asarray(dc, dtype=np.int64)
        ds = np.asarray(ds, dtype=np.float64)
        order = np.argsort(-ds, kind="stable")
        dc, db, ds = dc[order], np.asarray(db, dtype=np.float64).reshape(-1, 4)[order], ds[order]
        iou = box_iou_eps(lb, db) * (lc[:, None] == dc[None, :])
        tp.append(match_iou50(iou))
        conf.append(ds); pcls.append(dc); img.append(np.full(len(ds), i, np.int64)); tcls.append(lc)
        ok = (lc >= 0) & (lc < n_classes)
        np.add.at(n_label, (lc[ok], np.full(int(ok.sum()), i)), 1)

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
    conf_a, pcls_a, tp_a, img_a, tcls_a = (cat(conf, np.float64), cat(pcls, np.int64), cat(tp, bool),
                                           cat(img, np.int64), cat(tcls, np.int64))
    order = np.argsort(-conf_a)                    # ultralytics: i = np.argsort(-conf)
    classes = tuple(int(c) for c in np.unique(tcls_a) if 0 <= c < n_classes)
    tp_image, fp_gaps = [], []
    for c in classes:
        sel = order[pcls_a[order] == c]
        t, im = tp_a[sel], img_a[sel]
        gap = np.cumsum(t)                         # FP at position q lies in gap (#TPs before it)
        fp = ~t
        fp_gaps.append(sp.csr_matrix((np.ones(int(fp.sum())), (gap[fp], im[fp])), shape=(int(t.sum()) + 1, n_images)))
        tp_image.append(im[t])
    return Map50Table(classes=classes, tp_image=tuple(tp_image), fp_gaps=tuple(fp_gaps),
                      n_label=tuple(n_label[c] for c in classes), n_images=n_images, conf=conf_a, pred_cls=pcls_a,
                      tp=tp_a, target_cls=tcls_a)


def _class_ap50(tp_w: np.ndarray, fp_before: np.ndarray, n_l: int, eps: float) -> float:
    """ultralytics' ``compute_ap`` of one class of one resample from its reduced curve.

    ``tp_w`` (m,): the resample's copies of each TP detection (in confidence order);
    ``fp_before`` (m + 1,): cumulative false positives before each TP detection (last: total).
    The full curve has one point per detection copy; ``np.interp`` of its precision envelope
    only ever brackets an abscissa by the last point of a recall level and the next TP, and the
    envelope is set by the TPs, so the curve reduced to every TP copy, plus the last FP of every
    non-empty gap between TPs (and a leading FP point), gives bit-identical AP (a test compares
    with ``ap_per_class`` on the explicitly resampled detections).
    """
    from ultralytics.utils.metrics import compute_ap

    pos = np.flatnonzero(tp_w > 0)
    if pos.size == 0:
        return 0.0
    wt = tp_w[pos]
    fb = fp_before[pos]
    n_tp = int(wt.sum())
    k = np.arange(1, n_tp + 1, dtype=np.float64)
    f_rep = np.repeat(fb, wt)
    last = np.cumsum(wt)                                   # k of the last copy of each TP detection
    nxt = np.r_[fb[1:], -1.0]                              # FP count before the next TP detection
    gap = nxt > fb                                         # an FP lies between (not after the last TP)
    kg = last[gap].astype(np.float64)
    lead = fb[0] > 0
    rec = np.concatenate([[0.0] if lead else [], k, kg]) / (n_l + eps)
    prec = np.concatenate([[0.0] if lead else [], k / (k + f_rep), kg / (kg + nxt[gap])])
    key = np.concatenate([[-1] if lead else [], 2 * k, 2 * kg + 1])
    o = np.argsort(key, kind="stable")
    return float(compute_ap(rec[o], prec[o])[0])


def map50_resampled(table: Map50Table, counts: np.ndarray, eps: float = 1e-16) -> tuple[np.ndarray, np.ndarray]:
    """mAP50 (0..1) per weight row of ``counts`` (B, n_images), and per-class AP50 (B, C).

    Per class: ultralytics' ``ap_per_class`` at IoU 0.5 (``tpc / (n_l + eps)`` recall,
    ``tpc / (tpc + fpc)`` precision, ``compute_ap``) on the resample's detections, each repeated
    by its image's weight, evaluated from the reduced curve (:func:`_class_ap50`). Classes
    without labels in the resample are NaN and left out of the mean (ultralytics averages over the
    classes present in the targets); NaN mAP when no class has labels.
    """
    w = np.asarray(counts, dtype=np.int64)
    B, C = len(w), len(table.classes)
    ap = np.full((B, C), np.nan)
    for ci in range(C):
        n_l = w @ table.n_label[ci]
        im = table.tp_image[ci]
        for start in range(0, B, CHUNK):
            wc = w[start:start + CHUNK]
            fb = np.cumsum(table.fp_gaps[ci] @ wc.T.astype(np.float64), axis=0)   # (m + 1, b)
            for j in range(len(wc)):
                b = start + j
                if n_l[b] > 0:
                    ap[b, ci] = _class_ap50(wc[j, im], fb[:, j], int(n_l[b]), eps)
    with np.errstate(invalid="ignore"):
        present = np.isfinite(ap)
        m = np.where(present.any(axis=1), np.nansum(ap, axis=1) / np.maximum(present.sum(axis=1), 1), np.nan)
    return m, ap


def map50_full_sample(table: Map50Table) -> dict:
    """mAP50 and per-class AP50 (0..1) on the full sample with ultralytics' own ``ap_per_class``."""
    from ultralytics.utils.metrics import ap_per_class

    if len(table.classes) == 0:
        return {"all": None}
    ap, classes = ap_per_class(table.tp[:, None], table.conf, table.pred_cls, table.target_cls)[5:7]
    out = {int(c): float(a) for c, a in zip(classes, ap[:, 0])}
    out["all"] = float(ap[:, 0].mean())
    return out


def kitti_tables(gts: Sequence[kitti_ap.Objects], dets: Sequence[kitti_ap.Objects], cls: str) -> dict[str, ApTable]:
    """One :class:`ApTable` per KITTI difficulty (``easy``, ``moderate``, ``hard``) of class ``cls``
    (devkit rules of :mod:`~sim2real.metrics.kitti_ap`), from aligned per-image lists."""
    if cls not in kitti_ap.CLASS_RULES:
        raise kitti_ap.ConfigError(f"KITTI class must be one of {', '.join(kitti_ap.CLASS_RULES)}, got '{cls}'")
    _, min_overlap = kitti_ap.CLASS_RULES[cls]
    prepared = kitti_ap._prepare(gts, dets)
    out = {}
    empty = (np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    for d, name in enumerate(kitti_ap.DIFFICULTIES):
        n_gt, parts = [], []
        for gt, det, im in zip(gts, dets, prepared):
            ig, idt, n = kitti_ap.clean_data(gt, det, cls, d)
            n_gt.append(n)
            if not (ig != -1).any() and not (idt == 0).any():
                parts.append(empty)
                continue
            levels, assigned, dc_hit, first = kitti_ap.match_levels(im.iou, im.dc_overlap, im.score, ig, idt,
                                                                    min_overlap)
            parts.append((levels, *kitti_ap.level_statistics(levels, assigned, dc_hit, first, im.score, ig, idt)))
        out[name] = build_ap_table(n_gt, *zip(*parts)) if parts else build_ap_table([], [], [], [], [])
    return out
