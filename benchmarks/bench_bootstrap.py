"""Benchmark of the image bootstrap (sim2real.metrics.bootstrap) at the full KITTI val size.

Synthetic detections of realistic size: ``--images`` (default 3,769, the common KITTI val split)
images with KITTI-like ground truth (about 3.8 Car, 0.4 Van, 0.15 Truck, 1 DontCare per image,
box heights log-normal around 40 px, occlusion 0-2) and YOLO-like detections at conf >= 0.01
(80 % of objects found with IoU 0.55-0.95, some duplicates, about 20 low-score false positives
per image, scores rounded to 4 decimals as in the KITTI result files). Three such detectors
("variant", "baseline", "real") of different quality share the ground truth.

Prints, in one run: (a) one :func:`kitti_ap.evaluate` of Car on the full set (the non-bootstrap
cost, the baseline of the ratios); (b) building the per-image tables (KITTI Car easy/moderate/
hard + mAP50) of the three detectors; (c) ``--resamples`` (default 1,000) resamples of every
AP, mAP50 and the two gap closures (paired, the study's score of one variant). A check that the
bootstrap tables reproduce ``kitti_ap.evaluate`` exactly on the full sample. Then
``ratio_vs_one_evaluate`` (bootstrap total / one evaluate) and a last line
``bootstrap_seconds: <x>`` (tables + resamples of the three detectors; target <= 60 on 2 cores).

Usage::

    python benchmarks/bench_bootstrap.py [--images 3769] [--resamples 1000]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from sim2real.metrics import bootstrap as B  # noqa: E402
from sim2real.metrics import kitti_ap as K  # noqa: E402

CLASSES = ("Car", "Van", "Truck")


def synthetic_ground_truth(n_images: int, seed: int = 0) -> list[K.Objects]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_images):
        types = (["Car"] * rng.poisson(3.8) + ["Van"] * rng.poisson(0.4) + ["Truck"] * rng.poisson(0.15)
                 + ["DontCare"] * rng.poisson(1.0))
        n = len(types)
        h = np.clip(rng.lognormal(np.log(40), 0.6, n), 12, 300)
        w = h * rng.uniform(1.0, 2.2, n)
        x = rng.uniform(0, 1242 - w)
        y = np.clip(180 - 0.3 * h + rng.normal(0, 10, n), 0, 375 - h)
        out.append(K.Objects.make(types, np.stack([x, y, x + w, y + h], 1), occluded=rng.choice([0, 0, 1, 2], n),
                                  truncated=np.where(rng.uniform(size=n) < 0.1, rng.uniform(0, 0.6, n), 0.0)))
    return out


def synthetic_detections(gts: list[K.Objects], recall: float, seed: int) -> list[K.Objects]:
    rng = np.random.default_rng(seed)
    out = []
    for gt in gts:
        real = np.array([t in CLASSES for t in gt.type], dtype=bool)
        gb = gt.box_px[real]
        found = rng.uniform(size=len(gb)) < recall
        jitter = rng.normal(0, 0.04, (len(gb), 4)) * (gb[:, 3:4] - gb[:, 1:2])
        tb = (gb + jitter)[found]
        dup = tb[rng.uniform(size=len(tb)) < 0.2]
        dup = dup + rng.normal(0, 3, dup.shape)
        n_fp = rng.poisson(20)
        fh = np.clip(rng.lognormal(np.log(30), 0.6, n_fp), 8, 200)
        fx, fy = rng.uniform(0, 1100, n_fp), rng.uniform(100, 300, n_fp)
        fp = np.stack([fx, fy, fx + 1.6 * fh, fy + fh], 1)
        boxes = np.concatenate([tb, dup, fp])
        score = np.concatenate([rng.beta(5, 2, len(tb)), rng.beta(2, 4, len(dup)), 0.01 + 0.5 * rng.beta(1, 6, n_fp)])
        types = list(gt.type[real][found]) + list(gt.type[real][found][:len(dup)]) + list(
            rng.choice(CLASSES, n_fp, p=[0.8, 0.15, 0.05]))
        out.append(K.Objects.make(types, np.round(boxes, 2), score=np.round(score, 4)))
    return out


def yolo_view(gts, dets):
    """Per-image (class ids, boxes) of the label classes and (cls, box, conf) of the detections."""
    idx = {c: i for i, c in enumerate(CLASSES)}
    labels, preds = [], []
    for gt, det in zip(gts, dets):
        keep = np.array([t in idx for t in gt.type], dtype=bool)
        labels.append((np.array([idx[t] for t in gt.type[keep]], np.int64), gt.box_px[keep]))
        preds.append((np.array([idx[t] for t in det.type], np.int64), det.box_px, det.score))
    return labels, preds


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=3769)
    ap.add_argument("--resamples", type=int, default=1000)
    args = ap.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"load {os.getloadavg()[0]:.2f}; numpy {np.__version__}; python {platform.python_version()}")
    t0 = time.perf_counter()
    import ultralytics.utils.metrics  # noqa: F401  (torch + ultralytics import, once per process)
    print(f"import ultralytics (not counted below): {time.perf_counter() - t0:.1f} s")
    gts = synthetic_ground_truth(args.images)
    runs = {name: synthetic_detections(gts, r, s) for name, r, s in
            (("variant", 0.75, 1), ("baseline", 0.6, 2), ("real", 0.9, 3))}
    n_gt = sum(int(np.sum(g.type == "Car")) for g in gts)
    n_det = sum(len(d) for d in runs["variant"])
    print(f"{args.images} images, {n_gt} Car ground truth, {n_det} detections per detector")

    t0 = time.perf_counter()
    ref = K.evaluate(gts, runs["variant"], ["Car"])["Car"]
    t_eval = time.perf_counter() - t0
    print(f"(a) kitti_ap.evaluate Car, full set once: {t_eval:.2f} s")

    t0 = time.perf_counter()
    tables = {}
    for name, dets in runs.items():
        labels, preds = yolo_view(gts, dets)
        tables[name] = (B.kitti_tables(gts, dets, "Car"), B.build_map50_table(labels, preds, len(CLASSES)))
    t_tables = time.perf_counter() - t0
    print(f"(b) tables, 3 detectors (KITTI Car x 3 difficulties + mAP50): {t_tables:.2f} s")
    for d in K.DIFFICULTIES:
        full = B.ap_full_sample(tables["variant"][0][d])["ap_r40"]
        assert full == ref[d], (d, full, ref[d])
    print("    full-sample AP from the tables == kitti_ap.evaluate: exact")

    t0 = time.perf_counter()
    counts = B.resample_counts(args.images, args.resamples, seed=0)
    t_counts = time.perf_counter() - t0
    t_ap = t_map = 0.0
    res = {}
    for name, (kt, mt) in tables.items():
        t1 = time.perf_counter()
        aps = {d: B.ap_r40_resampled(kt[d], counts) for d in K.DIFFICULTIES}
        t_ap += time.perf_counter() - t1
        t1 = time.perf_counter()
        m50, _ = B.map50_resampled(mt, counts)
        t_map += time.perf_counter() - t1
        res[name] = (aps, m50)
    t1 = time.perf_counter()
    for key, get in (("kitti_car_moderate", lambda r: r[0]["moderate"]), ("mAP50", lambda r: r[1])):
        v, b, r = (get(res[n]) for n in ("variant", "baseline", "real"))
        with np.errstate(divide="ignore", invalid="ignore"):
            g = (v - b) / (r - b)
        print(f"    G {key}: {B.percentile_interval(g)}  denominator {B.percentile_interval(r - b)}")
    t_g = time.perf_counter() - t1
    t_resample = t_counts + t_ap + t_map + t_g
    print(f"(c) {args.resamples} resamples x 3 detectors: counts {t_counts:.2f} s, KITTI AP x3 {t_ap:.2f} s, "
          f"mAP50 {t_map:.2f} s, G {t_g:.3f} s; total {t_resample:.2f} s")
    total = t_tables + t_resample
    print(f"ratio_vs_one_evaluate: {total / t_eval:.2f}  (naive: {args.resamples} re-evaluations = "
          f"{args.resamples * t_eval / 60:.0f} min for one detector's Car AP alone)")
    print(f"bootstrap_seconds: {total:.1f}")


if __name__ == "__main__":
    main()
