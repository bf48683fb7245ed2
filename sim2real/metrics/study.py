"""The study's score of one variant: AP and mAP50 with bootstrap intervals, gap closure, seeds,
and detection quality by distance and occlusion (:mod:`.distance`).

**Gap closure** of variant v (Car Moderate AP|R40, mAP50, and per distance/occlusion slice)::

    G_v = (M_v − M_baseline) / (M_real − M_baseline)

``baseline``: the raw deduplicated synthetic set; ``real``: the oracle trained on real KITTI
train. G = 0: no better than the baseline, 1: as good as real data. The interval is the
percentile interval of G over *paired* bootstrap resamples (the same resampled val images for
v, baseline and real). When the denominator's interval (M_real − M_baseline) includes 0 there
is no measurable gap: G is ``null`` with a ``reason``, never a division by noise.

**Training seeds**: each (variant, seed) run is scored; the reported value is the mean over
seeds and its bootstrap interval is that of the seed mean (each resample's metric averaged over
seeds). With >= 2 seeds the ``seeds`` block adds, per headline metric, the per-seed values and
a Student-t interval of their mean (between-run training noise; scipy.stats.t).

Output keys (``reports/metrics/<v>.json``; percent for KITTI AP, 0..1 for mAP50 and recall):
``kitti.<cls>.<difficulty>`` and ``..._ci95``, ``..._R11``, ``n_gt_<difficulty>``;
``mAP50.all`` (+ per class) and ``mAP50_ci95``; ``gap_closure.{kitti_car_moderate,mAP50}``
``{value, ci95, denominator_ci95[, reason]}``; ``vs_baseline`` (paired difference M_v − M_baseline
``{value, ci95}``); ``seeds``; ``by_distance``, ``by_occlusion`` (per slice the same, for recall
and AP|R40);
``bootstrap`` (resamples, seed, level, images).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from sim2real.errors import ConfigError, DataError
from sim2real.formats import kitti
from sim2real.metrics import bootstrap as bs
from sim2real.metrics import distance as dist
from sim2real.metrics import kitti_ap
from sim2real.manifest import read_manifest

BASELINE = "baseline"
ORACLE = "real"
MIN_RESAMPLES = 1000


def ci_key(level: float) -> str:
    """Key suffix of an interval at ``level``: 0.95 -> ``ci95``."""
    return f"ci{round(level * 100):d}"


# ----------------------------------------------------------------------------- statistics
def gap_closure(v: np.ndarray, base: np.ndarray, real: np.ndarray, point: tuple[float | None, float | None, float | None],
                level: float = 0.95) -> dict:
    """``{"value", "ci95", "denominator_ci95"[, "reason"]}`` of G = (v − base) / (real − base).

    ``v``, ``base``, ``real``: (B,) paired resampled values (NaN = undefined in a resample);
    ``point``: the full-sample values. ``value``/``ci95`` are None with a reason when the
    denominator's interval includes 0 or a value is undefined.
    """
    k = ci_key(level)
    pv, pb, pr = point
    if pv is None or pb is None or pr is None:
        return {"value": None, k: None, f"denominator_{k}": None, "reason": "a metric is undefined (no ground truth)"}
    den_ci = bs.percentile_interval(real - base, level)
    out = {f"denominator_{k}": den_ci}
    if den_ci is None or den_ci[0] <= 0.0 <= den_ci[1] or pr == pb:
        return {**out, "value": None, k: None,
                "reason": f"no measurable gap: real - baseline interval {_fmt_ci(den_ci)} includes 0"}
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (v - base) / (real - base)
    return {**out, "value": float((pv - pb) / (pr - pb)), k: bs.percentile_interval(g, level)}


def paired_difference(v: np.ndarray, base: np.ndarray, point: tuple[float | None, float | None],
                      level: float = 0.95) -> dict:
    """``{"value", "ci95"}`` of M_v − M_baseline over paired resamples (None when undefined)."""
    k = ci_key(level)
    if point[0] is None or point[1] is None:
        return {"value": None, k: None}
    return {"value": float(point[0] - point[1]), k: bs.percentile_interval(v - base, level)}


def _fmt_ci(ci) -> str:
    return "undefined" if ci is None else f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float | None, list[float] | None]:
    """Mean and Student-t interval of the mean of per-seed values (None with fewer than 2)."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if x.size == 0:
        return None, None
    m = float(x.mean())
    if x.size < 2:
        return m, None
    half = float(stats.t.ppf(0.5 + level / 2.0, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return m, [m - half, m + half]


# ----------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class ValSet:
    """The real val split: image ids, label tables, per-image P2, image sizes."""

    ids: list[str]
    labels: list[pd.DataFrame]
    p2: list[np.ndarray | None]
    size_wh: list[tuple[int, int]]

    @classmethod
    def read(cls, val_dir: str | Path, *, roots: Sequence[str | Path]) -> "ValSet":
        """``val_dir/kitti_labels/*.txt``, ``val_dir/frames.csv`` (width, height; checked against the
        data ``roots``) and, where present, ``val_dir/calib/<id>.txt``."""
        val_dir = Path(val_dir)
        ids, labels = kitti_ap.read_ground_truth(val_dir / "kitti_labels")
        frames_csv = val_dir / "frames.csv"
        frames = read_manifest(frames_csv, usecols=["image_id", "width", "height"], roots=roots,
                               missing_hint="the val set's manifest: stage build_val").set_index("image_id")
        missing = [i for i in ids if i not in frames.index]
        if missing:
            raise DataError(frames_csv, f"no row for val image {missing[0]}")
        p2 = []
        for i in ids:
            f = val_dir / "calib" / f"{i}.txt"
            p2.append(kitti.read_calib(f)["P2"] if f.is_file() else None)
        sizes = [(int(frames.at[i, "width"]), int(frames.at[i, "height"])) for i in ids]
        return cls(ids=ids, labels=labels, p2=p2, size_wh=sizes)


@dataclass(frozen=True)
class RunTables:
    """Everything a resample needs of one detection run (a variant trained with one seed)."""

    kitti: dict[str, dict[str, bs.ApTable]]       # class -> difficulty -> table
    map50: bs.Map50Table
    slices: dict[str, bs.ApTable]                  # "all", "distance/<bin>", "occlusion/<level>"
    operating_point: dict                          # F1-maximising threshold on "all"
    n_detections: int


def yolo_labels(val: ValSet, classes: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image (class ids, boxes clipped to the image) of the label types in ``classes``, as
    ``build_val`` writes them for ultralytics (other types, DontCare included, dropped)."""
    idx = {c: i for i, c in enumerate(classes)}
    out = []
    for df, (w, h) in zip(val.labels, val.size_wh):
        keep = df[df["type"].isin(idx)]
        b = keep[["left", "top", "right", "bottom"]].to_numpy(dtype=np.float64).reshape(-1, 4)
        b = np.stack([b[:, 0].clip(0, w), b[:, 1].clip(0, h), b[:, 2].clip(0, w), b[:, 3].clip(0, h)], 1)
        ok = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        out.append((np.array([idx[t] for t in keep["type"].to_numpy()[ok]], np.int64), b[ok]))
    return out


def estimate_distances(val: ValSet, dets: Sequence[kitti_ap.Objects], camera_height_m: float,
                       car_length_m: float) -> list[np.ndarray]:
    """Ground-plane distance of every detection (needs ``calib/<id>.txt`` for each val image)."""
    out = []
    for image_id, p2, det in zip(val.ids, val.p2, dets):
        if p2 is None:
            raise DataError(f"calib/{image_id}.txt", "calibration (P2) of val image missing: the distance "
                            "estimate of unmatched detections needs it (build_val copies it from KITTI calib)")
        out.append(dist.ground_plane_distance_m(det.box_px[:, 3], p2, camera_height_m, car_length_m))
    return out


def run_tables(val: ValSet, det_dfs: Sequence[pd.DataFrame], *, kitti_classes: Sequence[str], classes: Sequence[str],
               edges_m: Sequence[float], camera_height_m: float, car_length_m: float,
               labels_yolo=None) -> RunTables:
    """Per-image statistics of one run (detections ``det_dfs`` aligned with ``val.ids``)."""
    gts = [kitti_ap.Objects.from_frame(df) for df in val.labels]
    dets = [kitti_ap.Objects.from_frame(df) for df in det_dfs]
    tables = {c: bs.kitti_tables(gts, dets, c) for c in kitti_classes}
    idx = {c: i for i, c in enumerate(classes)}
    preds = []
    for d in dets:
        keep = np.array([t in idx for t in d.type], dtype=bool)
        preds.append((np.array([idx[t] for t in d.type[keep]], np.int64), d.box_px[keep], d.score[keep]))
    m50 = bs.build_map50_table(labels_yolo if labels_yolo is not None else yolo_labels(val, classes), preds, len(classes))
    gdist = [dist.object_distance_m(df) for df in val.labels]
    ddist = estimate_distances(val, dets, camera_height_m, car_length_m)
    slices = dist.slice_tables(gts, dets, gdist, ddist, edges_m)
    return RunTables(kitti=tables, map50=m50, slices=slices, operating_point=slices["all"].f1_operating_point(),
                     n_detections=int(sum(len(d) for d in dets)))


# ----------------------------------------------------------------------------- samples
def run_samples(t: RunTables, counts: np.ndarray, classes: Sequence[str]) -> dict[str, tuple[float | None, np.ndarray]]:
    """Every scalar metric of one run: name -> (full-sample value or None, (B,) resampled values).

    Names: ``kitti.<cls>.<difficulty>`` (AP|R40 %), ``mAP50``, ``<slice>.recall`` and
    ``<slice>.ap_r40`` (slice ``all``, ``distance/<bin>``, ``occlusion/<level>``).
    """
    out: dict[str, tuple[float | None, np.ndarray]] = {}
    for c, per in t.kitti.items():
        for d, table in per.items():
            out[f"kitti.{c}.{d}"] = (bs.ap_full_sample(table)["ap_r40"], bs.ap_r40_resampled(table, counts))
    full = bs.map50_full_sample(t.map50)
    out["mAP50"] = (full["all"], bs.map50_resampled(t.map50, counts)[0])
    for i, name in enumerate(classes):
        if i in full:
            out[f"mAP50.{name}"] = (full[i], np.full(len(counts), np.nan))
    thr = t.operating_point["threshold"]
    for key, table in t.slices.items():
        out[f"{key}.ap_r40"] = (bs.ap_full_sample(table)["ap_r40"], bs.ap_r40_resampled(table, counts))
        n_all = int(table.n_gt.sum())
        n_b = counts @ table.n_gt
        if thr is None:
            tp_b, tp_1 = np.zeros(len(counts)), 0
        else:
            tp_b = table.counts_at(thr, counts)[0]
            tp_1 = int(table.counts_at(thr)[0][0])
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"{key}.recall"] = (tp_1 / n_all if n_all else None, np.where(n_b > 0, tp_b / n_b, np.nan))
    return out


def mean_over_seeds(per_seed: Sequence[dict[str, tuple]]) -> dict[str, tuple[float | None, np.ndarray]]:
    """Seed mean of every metric: value = mean of the full-sample values (None if any is None),
    resampled = per-resample mean."""
    out = {}
    for name in per_seed[0]:
        pts = [s[name][0] for s in per_seed]
        val = None if any(p is None for p in pts) else float(np.mean(pts))
        out[name] = (val, np.mean(np.stack([s[name][1] for s in per_seed]), axis=0))
    return out


# ----------------------------------------------------------------------------- the JSON
def score_json(variant: str, runs: dict[str, list[dict]], seeds: Sequence[int], *, classes: Sequence[str],
               kitti_classes: Sequence[str], edges_m: Sequence[float], level: float, resamples: int, seed: int,
               n_images: int, n_gt: dict, extra: dict) -> dict:
    """Assemble ``reports/metrics/<variant>.json`` from per-run samples.

    ``runs``: {run name (variant, ``baseline``, ``real``): [run_samples of each seed]}; ``n_gt``:
    counted ground truth per metric name (``kitti.<c>.<d>`` and slices); ``extra``: merged in.
    """
    k = ci_key(level)
    mean = {name: mean_over_seeds(per) for name, per in runs.items()}
    me, base, real = mean[variant], mean[BASELINE], mean[ORACLE]

    def value(name):
        return me[name][0]

    def ci(name):
        return bs.percentile_interval(me[name][1], level) if me[name][0] is not None else None

    def gap(name):
        return gap_closure(me[name][1], base[name][1], real[name][1], (me[name][0], base[name][0], real[name][0]), level)

    def delta(name):
        return paired_difference(me[name][1], base[name][1], (me[name][0], base[name][0]), level)

    out: dict = {"variant": variant, "val_images": n_images, **extra,
                 "bootstrap": {"resamples": resamples, "seed": seed, "level": level, "images": n_images,
                               "method": "percentile interval over val images, resampled with replacement; "
                                         "paired across variants (same resamples)"}}
    kit: dict = {}
    for c in kitti_classes:
        kit[c] = {}
        for d in kitti_ap.DIFFICULTIES:
            kit[c][d] = value(f"kitti.{c}.{d}")
            kit[c][f"{d}_{k}"] = ci(f"kitti.{c}.{d}")
            kit[c][f"n_gt_{d}"] = n_gt[f"kitti.{c}.{d}"]
    out["kitti"] = kit
    out["mAP50"] = {"all": value("mAP50"), **{n: value(f"mAP50.{n}") for n in classes if f"mAP50.{n}" in me}}
    out[f"mAP50_{k}"] = ci("mAP50")
    headline = {"kitti_car_moderate": "kitti.Car.moderate", "mAP50": "mAP50"}
    out["gap_closure"] = {h: gap(name) for h, name in headline.items() if name in me}
    out["vs_baseline"] = {h: delta(name) for h, name in headline.items() if name in me}
    if variant in (BASELINE, ORACLE):
        for g in out["gap_closure"].values():
            g["reason"] = f"{variant} is a reference of G (G = {0 if variant == BASELINE else 1} by definition)"
    out["seeds"] = seeds_block(runs, variant, list(seeds), headline, level)

    def slice_block(key):
        s = {"n_gt": n_gt[key]}
        for m in ("recall", "ap_r40"):
            s[m] = value(f"{key}.{m}")
            s[f"{m}_{k}"] = ci(f"{key}.{m}")
        s["gap_closure"] = {m: gap(f"{key}.{m}") for m in ("recall", "ap_r40")}
        s["vs_baseline"] = {m: delta(f"{key}.{m}") for m in ("recall", "ap_r40")}
        return s
    names = dist.bin_names(edges_m)
    out["by_distance"] = {"bins": {n: slice_block(f"distance/{n}") for n in names}, "all": slice_block("all")}
    out["by_occlusion"] = {"levels": {str(o): slice_block(f"occlusion/{o}") for o in dist.OCCLUSION_LEVELS}}
    return out


def seeds_block(runs: dict[str, list[dict]], variant: str, seeds: list[int], headline: dict, level: float) -> dict:
    """Per-seed values, mean and Student-t interval of each headline metric and its G (>= 2 seeds)."""
    block: dict = {"values": seeds}
    if len(seeds) < 2:
        return block
    k = ci_key(level)
    for h, name in headline.items():
        vals = [s[name][0] for s in runs[variant]]
        m, ti = t_interval(vals, level)
        gs = []
        for sv, sb, sr in zip(runs[variant], runs[BASELINE], runs[ORACLE]):
            pv, pb, pr = sv[name][0], sb[name][0], sr[name][0]
            gs.append(None if None in (pv, pb, pr) or pr == pb else (pv - pb) / (pr - pb))
        gm, gti = t_interval(gs, level)
        block[h] = {"per_seed": vals, "mean": m, f"t_{k}": ti,
                    "gap_closure": {"per_seed": gs, "mean": gm, f"t_{k}": gti}}
    return block


def score_variant(variant: str, eval_root: str | Path, val_dir: str | Path, *, seeds: Sequence[int],
                  classes: Sequence[str], kitti_classes: Sequence[str], study, roots: Sequence[str | Path]) -> dict:
    """Read ``eval_root/{variant,baseline,real}/seed<s>/detections`` and ``val_dir``; return the JSON.

    ``roots``: the data roots (:func:`sim2real.safety.data_roots`) for ``val_dir``'s manifest.
    ``study``: the params section (``bootstrap_resamples``, ``ci_level``, ``bootstrap_seed``,
    ``distance_bins_m``, ``camera_height_m`` (null: median label y of val Cars),
    ``car_length_m``).
    """
    resamples = int(study["bootstrap_resamples"])
    if resamples < MIN_RESAMPLES:
        raise ConfigError(f"params.yaml: study.bootstrap_resamples must be >= {MIN_RESAMPLES}, got {resamples}")
    level = float(study["ci_level"])
    if not 0.5 <= level < 1.0:
        raise ConfigError(f"params.yaml: study.ci_level must be in [0.5, 1), got {level}")
    edges = dist.check_edges(study["distance_bins_m"])
    if "Car" not in kitti_classes:
        raise ConfigError("params.yaml: evaluate.kitti_classes must include Car (the study's headline metric)")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("params.yaml: train.seeds is empty")
    val = ValSet.read(val_dir, roots=roots)
    cam_h = study["camera_height_m"]
    cam_src = "params study.camera_height_m"
    if cam_h is None:
        cam_h, cam_src = dist.camera_height_from_labels(val.labels), "median location y of the val split's Cars"
        if cam_h is None:
            raise DataError(Path(val_dir) / "kitti_labels", "no Car with a valid location to estimate the camera height "
                            "(set study.camera_height_m)")
    car_length = float(study["car_length_m"])
    labels_yolo = yolo_labels(val, classes)
    counts = bs.resample_counts(len(val.ids), resamples, int(study["bootstrap_seed"]))
    runs: dict[str, list[dict]] = {}
    n_det: dict[str, list[int]] = {}
    op: dict[str, float | None] = {}
    last = None
    for name in dict.fromkeys([variant, BASELINE, ORACLE]):
        runs[name], n_det[name] = [], []
        for s in seeds:
            folder = Path(eval_root) / name / f"seed{s}" / "detections"
            if not folder.is_dir():
                raise DataError(folder, f"detections of run {name} seed {s} not found (stage evaluate)")
            t = run_tables(val, kitti_ap.read_results(folder, val.ids), kitti_classes=kitti_classes, classes=classes,
                           edges_m=edges, camera_height_m=float(cam_h), car_length_m=car_length, labels_yolo=labels_yolo)
            runs[name].append(run_samples(t, counts, classes))
            n_det[name].append(t.n_detections)
            if name == variant:
                op[f"seed{s}"] = t.operating_point
            last = t
    n_gt = {f"kitti.{c}.{d}": int(last.kitti[c][d].n_gt.sum()) for c in kitti_classes for d in kitti_ap.DIFFICULTIES}
    n_gt.update({k: int(v.n_gt.sum()) for k, v in last.slices.items()})
    unbinned = {"dontcare": int(sum((df["type"] == "DontCare").sum() for df in val.labels)),
                "invalid_location": int(sum(((df["type"] != "DontCare") & np.isnan(dist.object_distance_m(df))).sum()
                                            for df in val.labels))}
    out = score_json(variant, runs, seeds, classes=classes, kitti_classes=kitti_classes, edges_m=edges, level=level,
                     resamples=resamples, seed=int(study["bootstrap_seed"]), n_images=len(val.ids), n_gt=n_gt,
                     extra={"detections": n_det[variant]})
    edges_l = [float(e) for e in edges]
    meta = {"distance": "camera z of the 3D box centre (KITTI label_2 location z), metres",
            "bins_m": [[a, b] for a, b in zip(edges_l, edges_l[1:] + [None])],
            "ground_truth": "Car with occluded <= 2 and truncated <= 0.5 (KITTI Hard without its height rule), IoU > 0.7; "
                            "other Cars and Vans ignored the devkit way",
            "unbinned_objects": unbinned,
            "unmatched_detections": {"method": "ground plane: box bottom edge through P2, plus half a Car length",
                                     "camera_height_m": float(cam_h), "camera_height_source": cam_src,
                                     "car_length_m": car_length},
            "operating_point": {"rule": "score threshold maximising F1 over all binned-or-not Car ground truth, per seed",
                                **op}}
    out["by_distance"].update(meta)
    out["by_occlusion"].update({"ground_truth": meta["ground_truth"], "operating_point": meta["operating_point"],
                                "unmatched_detections": "false positive at every occlusion level (not estimable)"})
    return out
