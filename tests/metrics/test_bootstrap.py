"""The image bootstrap against its references: the devkit re-implementation (kitti_ap.evaluate on
the explicitly resampled image list) and ultralytics' own matching and ap_per_class."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sim2real.metrics import bootstrap as B
from sim2real.metrics import kitti_ap as K


def random_boxes(rng: np.random.Generator, n: int, x_max: float, y_max: float, w_px: tuple[float, float],
                 h_px: tuple[float, float]) -> np.ndarray:
    """(n, 4) xyxy boxes: top-left uniform in [0, x_max) x [0, y_max), width and height uniform in
    the given ranges (drawn in that order: x, y, w, h)."""
    x, y = rng.uniform(0, x_max, n), rng.uniform(0, y_max, n)
    return np.stack([x, y, x + rng.uniform(*w_px, n), y + rng.uniform(*h_px, n)], 1)


def random_scenes(seed: int, n_images: int = 40, score_decimals: int = 1):
    """Random KITTI-like scenes (Car/Van/Truck/DontCare, occlusion, truncation) and detections
    (jittered hits, duplicates, false positives) with heavily tied scores."""
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for _ in range(n_images):
        n = int(rng.integers(0, 10))
        gb = random_boxes(rng, n, 900, 250, (15, 200), (15, 120))
        jit = gb + rng.normal(0, 3, gb.shape)
        m = int(rng.integers(0, 6))
        extra = random_boxes(rng, m, 900, 250, (15, 150), (15, 100))
        db = np.concatenate([jit[rng.uniform(size=n) < 0.8], jit[rng.uniform(size=n) < 0.3] + 2, extra])
        gts.append(K.Objects.make(rng.choice(["Car", "Van", "Truck", "DontCare", "Car"], n), gb,
                                  occluded=rng.choice([0, 0, 1, 2, 3], n), truncated=rng.uniform(0, 0.4, n)))
        dets.append(K.Objects.make(rng.choice(["Car", "Car", "Van"], len(db)), db,
                                   score=np.round(rng.uniform(0, 1, len(db)), score_decimals)))
    return gts, dets


@pytest.mark.parametrize("seed", range(3))
def test_match_levels_is_compute_statistics_at_every_threshold(seed):
    gts, dets = random_scenes(seed)
    for gt, det, im in zip(gts, dets, K._prepare(gts, dets)):
        for d in range(3):
            ig, idt, _ = K.clean_data(gt, det, "Car", d)
            levels, assigned, dc_hit, first = K.match_levels(im.iou, im.dc_overlap, im.score, ig, idt, 0.7)
            tp, fp, v = K.level_statistics(levels, assigned, dc_hit, first, im.score, ig, idt)
            ref_v = K.compute_statistics(im.iou, im.dc_overlap, im.score, ig, idt, 0.7, False)[3]
            assert sorted(v) == sorted(ref_v)
            for k, t in enumerate(levels):
                a, b, _, _ = K.compute_statistics(im.iou, im.dc_overlap, im.score, ig, idt, 0.7, True, t)
                assert (tp[k], fp[k]) == (a, b)


def test_push_positions_are_get_thresholds():
    rng = np.random.default_rng(0)
    n_gt = rng.integers(1, 400, 300)
    n_tp = np.minimum(rng.integers(0, 400, 300), n_gt)
    pos = B._push_positions(n_tp, n_gt)
    for t, n, p in zip(n_tp, n_gt, pos):
        scores = np.arange(t, 0, -1, dtype=float)              # distinct: threshold value = position
        ref = K.get_thresholds(scores, int(n))[:K.N_SAMPLE_PTS]
        got = [scores[i] for i in p if i >= 0]
        assert got == ref, (t, n)


@pytest.mark.parametrize("seed", range(3))
def test_kitti_ap_on_full_sample_and_resamples_equals_the_devkit_exactly(seed):
    gts, dets = random_scenes(seed, 50)
    tables = B.kitti_tables(gts, dets, "Car")
    ref = K.evaluate(gts, dets, ["Car"])["Car"]
    for d, t in tables.items():
        full = B.ap_full_sample(t)
        assert (full["ap_r40"], full["ap_r11"], full["n_gt"]) == (ref[d], ref[f"{d}_R11"], ref[f"n_gt_{d}"])
    counts = B.resample_counts(len(gts), 6, seed)
    got = {d: B.ap_r40_resampled(t, counts) for d, t in tables.items()}
    for b in range(len(counts)):
        idx = np.repeat(np.arange(len(gts)), counts[b])          # the resample, built explicitly
        r = K.evaluate([gts[i] for i in idx], [dets[i] for i in idx], ["Car"])["Car"]
        for d in tables:
            assert (np.isnan(got[d][b]) and r[d] is None) or got[d][b] == r[d], (b, d)


def yolo_data(seed: int, n_images: int, ties: bool):
    rng = np.random.default_rng(seed)
    labels, dets = [], []
    for _ in range(n_images):
        n = int(rng.integers(0, 6))
        lb = random_boxes(rng, n, 500, 200, (10, 80), (10, 60))
        lc = rng.integers(0, 3, n)
        keep = rng.uniform(size=n) < 0.7
        m = int(rng.integers(0, 5))
        x2, y2 = rng.uniform(0, 500, m), rng.uniform(0, 200, m)
        db = np.concatenate([lb[keep] + rng.normal(0, 4, (int(keep.sum()), 4)), np.stack([x2, y2, x2 + 30, y2 + 20], 1)])
        dc = np.concatenate([lc[keep], rng.integers(0, 3, m)])
        ds = rng.uniform(0, 1, len(db))
        labels.append((lc, lb))
        dets.append((dc, db, np.round(ds, 1) if ties else ds))
    return labels, dets


def test_match_iou50_is_ultralytics_match_predictions():
    from ultralytics.engine.validator import BaseValidator

    fake = SimpleNamespace(iouv=torch.tensor([0.5]))
    rng = np.random.default_rng(1)
    for _ in range(30):
        labels, dets = yolo_data(int(rng.integers(1e6)), 1, ties=False)
        (lc, lb), (dc, db, ds) = labels[0], dets[0]
        o = np.argsort(-ds)
        dc, db = dc[o], db[o]
        iou = B.box_iou_eps(lb, db)
        ref = BaseValidator.match_predictions(fake, torch.tensor(dc), torch.tensor(lc), torch.tensor(iou)).numpy()[:, 0]
        got = B.match_iou50(iou * (lc[:, None] == dc[None, :]))
        np.testing.assert_array_equal(got, ref)


def test_map50_equals_ultralytics_on_full_sample_and_on_resamples():
    from ultralytics.utils.metrics import ap_per_class

    labels, dets = yolo_data(0, 60, ties=True)
    t = B.build_map50_table(labels, dets, 3)
    ap = ap_per_class(t.tp[:, None], t.conf, t.pred_cls, t.target_cls)[5]
    m, _ = B.map50_resampled(t, np.ones((1, 60), np.int64))
    assert m[0] == ap[:, 0].mean() == B.map50_full_sample(t)["all"]
    labels, dets = yolo_data(1, 60, ties=False)                  # distinct scores: one sort order
    t = B.build_map50_table(labels, dets, 3)
    counts = B.resample_counts(60, 5, 3)
    m, _ = B.map50_resampled(t, counts)
    for b in range(5):
        idx = np.repeat(np.arange(60), counts[b])
        r = B.build_map50_table([labels[i] for i in idx], [dets[i] for i in idx], 3)
        assert m[b] == B.map50_full_sample(r)["all"]


def test_map50_equals_ultralytics_detection_validator_metrics():
    """The val path of ultralytics (DetectionValidator._process_batch + DetMetrics) on the same
    boxes: our IoU-0.5 AP equals its ap50 per class and its map50."""
    from ultralytics.models.yolo.detect.val import DetectionValidator

    v = DetectionValidator()
    v.metrics.names = {0: "Car", 1: "Van", 2: "Truck"}
    labels, dets = yolo_data(2, 40, ties=False)
    for i, ((lc, lb), (dc, db, ds)) in enumerate(zip(labels, dets)):
        o = np.argsort(-ds)
        pred = {"cls": torch.tensor(dc[o], dtype=torch.float32), "bboxes": torch.tensor(db[o], dtype=torch.float32),
                "conf": torch.tensor(ds[o], dtype=torch.float32)}
        batch = {"cls": torch.tensor(lc, dtype=torch.float32), "bboxes": torch.tensor(lb, dtype=torch.float32)}
        tp = v._process_batch(pred, batch)["tp"]
        v.metrics.update_stats({"tp": tp, "conf": ds[o], "pred_cls": dc[o].astype(float), "target_cls": lc.astype(float),
                                "target_img": np.unique(lc), "im_name": f"{i}.png"})
    v.metrics.process()
    ours = B.map50_full_sample(B.build_map50_table(labels, dets, 3))["all"]
    assert ours == pytest.approx(float(v.metrics.box.map50), abs=1e-6)   # float32 boxes/conf in ultralytics


def synthetic_ap_samples(n_images: int, seed: int, counts_seed: int, resamples: int = 1000):
    gts, dets = random_scenes(seed, n_images, score_decimals=3)
    t = B.kitti_tables(gts, dets, "Car")["hard"]
    return B.ap_r40_resampled(t, B.resample_counts(n_images, resamples, counts_seed))


def test_intervals_are_reproducible_by_seed_and_shrink_with_more_images():
    a = synthetic_ap_samples(60, 0, counts_seed=5)
    np.testing.assert_array_equal(a, synthetic_ap_samples(60, 0, counts_seed=5))
    assert not np.array_equal(a, synthetic_ap_samples(60, 0, counts_seed=6))
    small = B.percentile_interval(a)
    large = B.percentile_interval(synthetic_ap_samples(600, 0, counts_seed=5))
    # ten times the images: about 1/sqrt(10) of the width; at least halved
    assert (large[1] - large[0]) < 0.5 * (small[1] - small[0])


def test_resample_counts_and_percentile_interval():
    c = B.resample_counts(7, 50, 0)
    assert c.shape == (50, 7) and (c.sum(axis=1) == 7).all()
    np.testing.assert_array_equal(c, B.resample_counts(7, 50, 0))
    assert B.percentile_interval(np.r_[np.arange(101.0), np.nan]) == pytest.approx([2.5, 97.5])
    assert B.percentile_interval(np.full(5, np.nan)) is None
