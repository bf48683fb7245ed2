"""The study's score (sim2real.metrics.study, stage score): gap closure on hand-made detection
files (including the null case), the negative control's machinery, seed t-intervals, the stage."""
from __future__ import annotations

import json
import subprocess
import sys
import zlib

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from sim2real.errors import ConfigError, DataError
from sim2real.formats import kitti
from sim2real.metrics import bootstrap as B
from sim2real.metrics import study as S
from study_fixtures import P2, STUDY, car_box, detect, label_row, make_world, write_run, write_val

CLASSES = ["Car", "Van", "Truck"]


def one_car_world(n: int = 80) -> list[pd.DataFrame]:
    """n images with one fully visible, 45 m Car each (>= 41 ground truth: AP|R40 can reach 100)."""
    return [pd.DataFrame([label_row("Car", car_box(0.0, 30.0), xyz=(0.0, 1.65, 30.0))], columns=kitti.LABEL_COLUMNS)
            for _ in range(n)]


def perfect(labels: list[pd.DataFrame], found: int) -> list[pd.DataFrame]:
    """Exact boxes with distinct scores on the first ``found`` images, nothing elsewhere."""
    out = []
    for i, df in enumerate(labels):
        rows = [dict(r, score=round(0.99 - i / 200, 4)) for r in df.to_dict("records")] if i < found else []
        out.append(pd.DataFrame(rows, columns=kitti.RESULT_COLUMNS))
    return out


def score(tmp_path, variant, seeds=(0,), study=STUDY):
    return S.score_variant(variant, tmp_path / "eval", tmp_path / "val", seeds=list(seeds), classes=CLASSES,
                           kitti_classes=["Car"], study=study, roots=[tmp_path])


def test_gap_closure_on_hand_made_detection_files(tmp_path):
    # 80 cars, no false positives: finding 40 / 60 / 80 of them gives AP|R40 = 50 / 75 / 100
    # (devkit threshold sampling: 21 / 31 / 41 filled positions, see tests/metrics/test_kitti_ap.py)
    labels = one_car_world()
    write_val(tmp_path / "val", labels)
    for name, found in (("baseline", 40), ("depth_blur", 60), ("real", 80)):
        write_run(tmp_path / "eval", name, 0, perfect(labels, found))
    m = score(tmp_path, "depth_blur")
    car = m["kitti"]["Car"]
    assert (car["moderate"], m["kitti"]["Car"]["n_gt_moderate"]) == (75.0, 80)
    lo, hi = car["moderate_ci95"]
    assert lo < 75.0 < hi
    g = m["gap_closure"]["kitti_car_moderate"]
    assert g["value"] == pytest.approx((75 - 50) / (100 - 50))
    assert g["ci95"][0] < 0.5 < g["ci95"][1] and "reason" not in g
    assert g["denominator_ci95"][0] > 0
    assert m["vs_baseline"]["kitti_car_moderate"]["value"] == 25.0
    assert m["seeds"] == {"values": [0]}
    json.dumps(m, allow_nan=False)                               # writable as the stage writes it


def test_gap_closure_is_null_when_real_does_not_beat_the_baseline(tmp_path):
    labels = one_car_world()
    write_val(tmp_path / "val", labels)
    for name, found in (("baseline", 40), ("depth_blur", 60), ("real", 40)):
        write_run(tmp_path / "eval", name, 0, perfect(labels, found))
    g = score(tmp_path, "depth_blur")["gap_closure"]
    for key in ("kitti_car_moderate", "mAP50"):
        assert g[key]["value"] is None and g[key]["ci95"] is None
        assert "no measurable gap" in g[key]["reason"] and g[key]["denominator_ci95"] == [0.0, 0.0]


def test_gap_closure_function_directly():
    rng = np.random.default_rng(0)
    base, real = rng.normal(10, 1, 1000), rng.normal(30, 1, 1000)
    v = base + 0.25 * (real - base)
    g = S.gap_closure(v, base, real, (15.0, 10.0, 30.0))
    assert g["value"] == 0.25 and g["ci95"] == pytest.approx([0.25, 0.25])
    assert S.gap_closure(v, base, base + rng.normal(0, 1, 1000), (15.0, 10.0, 10.5))["value"] is None
    assert S.gap_closure(v, base, real, (None, 10.0, 30.0))["reason"].startswith("a metric is undefined")


def negative_control_interval(rep: int) -> tuple[list, list]:
    """baseline and control: two independent draws of the *same* noisy detector; real: better.
    In memory (the library the stage calls), Car Moderate AP|R40, 1000 paired resamples."""
    labels = make_world(60, seed=100 + rep)
    val = S.ValSet(ids=[f"{i:06d}" for i in range(60)], labels=labels, p2=[P2] * 60, size_wh=[(1242, 375)] * 60)
    counts = B.resample_counts(60, 1000, seed=rep)
    samples = {}
    for name, rec, fp, seed in (("baseline", 0.6, 2.0, 1000), ("control", 0.6, 2.0, 2000),
                                ("real", 0.95, 0.5, 3000), ("better", 0.9, 0.5, 4000)):
        t = S.run_tables(val, detect(labels, rec, seed=seed + rep, fp_per_image=fp), kitti_classes=["Car"],
                         classes=CLASSES, edges_m=[0, 20, 40, 60], camera_height_m=1.65, car_length_m=3.9)
        samples[name] = S.run_samples(t, counts, CLASSES)["kitti.Car.moderate"]
    b, r = samples["baseline"], samples["real"]
    return tuple(S.gap_closure(samples[v][1], b[1], r[1], (samples[v][0], b[0], r[0]))["ci95"]
                 for v in ("control", "better"))


def test_negative_control_interval_covers_zero():
    """The machinery, not a number: in repeated worlds the 95 % interval of a control that differs
    from the baseline only by noise covers 0 (nearly always), while a truly better detector's
    excludes 0 — so the intervals are neither too narrow nor uninformative."""
    covered = excluded = 0
    reps = 5
    for rep in range(reps):
        control, better = negative_control_interval(rep)
        covered += control[0] <= 0.0 <= control[1]
        excluded += better[0] > 0.0
    assert covered >= reps - 1
    assert excluded == reps


def test_seeds_mean_and_t_interval(tmp_path):
    labels = make_world(20, seed=5)
    write_val(tmp_path / "val", labels)
    for s in (0, 1, 2):
        write_run(tmp_path / "eval", "baseline", s, detect(labels, 0.5, seed=10 + s))
        write_run(tmp_path / "eval", "real", s, detect(labels, 0.95, seed=20 + s, fp_per_image=0.3))
        write_run(tmp_path / "eval", "depth_blur", s, detect(labels, 0.7 + 0.05 * s, seed=30 + s))
    m = score(tmp_path, "depth_blur", seeds=(0, 1, 2))
    sd = m["seeds"]["kitti_car_moderate"]
    per = sd["per_seed"]
    assert len(per) == 3 and len(set(per)) == 3
    assert m["kitti"]["Car"]["moderate"] == pytest.approx(np.mean(per))       # headline = seed mean
    ref = stats.t.interval(0.95, 2, loc=np.mean(per), scale=stats.sem(per))    # scipy's own interval
    assert sd["t_ci95"] == pytest.approx(list(ref))
    gs = sd["gap_closure"]["per_seed"]
    assert sd["gap_closure"]["mean"] == pytest.approx(np.mean(gs))
    one = score(tmp_path, "depth_blur", seeds=(0,))
    assert one["seeds"] == {"values": [0]}
    assert one["kitti"]["Car"]["moderate"] == per[0]


def test_by_distance_blocks_and_reproducible_by_seed(tmp_path):
    labels = make_world(40, seed=8)
    write_val(tmp_path / "val", labels)
    for name, rec, far in (("baseline", 0.8, 0.2), ("real", 0.9, 0.9), ("depth_blur", 0.8, 0.6)):
        write_run(tmp_path / "eval", name, 0, detect(labels, rec, seed=zlib.crc32(name.encode()) % 1000, far_recall=far))
    a = score(tmp_path, "depth_blur")
    assert a == score(tmp_path, "depth_blur")                                   # same seed, same intervals
    other = score(tmp_path, "depth_blur", study={**STUDY, "bootstrap_seed": 1})
    assert a["by_distance"]["bins"]["60+"]["recall_ci95"] != other["by_distance"]["bins"]["60+"]["recall_ci95"]
    bins = a["by_distance"]["bins"]
    assert list(bins) == ["0-20", "20-40", "40-60", "60+"]
    assert sum(b["n_gt"] for b in bins.values()) <= a["by_distance"]["all"]["n_gt"]
    for b in bins.values():
        lo, hi = b["recall_ci95"]
        assert 0 <= lo <= b["recall"] <= hi <= 1
        assert set(b["gap_closure"]) == {"recall", "ap_r40"}
    op = a["by_distance"]["operating_point"]["seed0"]
    assert 0 < op["threshold"] < 1 and 0 < op["f1"] <= 1
    assert a["by_distance"]["unmatched_detections"]["camera_height_m"] == pytest.approx(1.65)
    assert set(a["by_occlusion"]["levels"]) == {"0", "1", "2"}
    # the far-car recall of depth_blur beats the baseline's (far_recall 0.6 vs 0.2)
    assert bins["60+"]["vs_baseline"]["recall"]["ci95"][0] > 0


def test_score_stage_writes_metrics_and_names_bad_input(tmp_path):
    labels = one_car_world(50)
    write_val(tmp_path / "val", labels)
    for name, found in (("baseline", 20), ("real", 50)):
        write_run(tmp_path / "eval", name, 0, perfect(labels, found))
    from conftest import ROOT
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(json.dumps({
        "study": STUDY, "train": {**shipped["train"], "seeds": [0]}, "classes": CLASSES,
        "evaluate": {**shipped["evaluate"], "kitti_classes": ["Car"]}, "data": shipped["data"]}))
    cmd = [sys.executable, "-m", "stages.score", "--variant", "baseline", "--eval", str(tmp_path / "eval"),
           "--val", str(tmp_path / "val"), "--out", str(tmp_path / "m.json")]
    from conftest import ROOT
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    ok = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["kitti"]["Car"]["moderate_ci95"] and "reference" in m["gap_closure"]["mAP50"]["reason"]
    bad = subprocess.run(cmd[:4] + ["depth_blur"] + cmd[5:], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "depth_blur/seed0/detections" in bad.stderr and "Traceback" not in bad.stderr
    with pytest.raises(ConfigError, match="bootstrap_resamples"):
        S.score_variant("baseline", tmp_path / "eval", tmp_path / "val", seeds=[0], classes=CLASSES,
                        kitti_classes=["Car"], study={**STUDY, "bootstrap_resamples": 100}, roots=[tmp_path])
    (tmp_path / "val" / "calib" / "000003.txt").unlink()
    with pytest.raises(DataError, match="calib/000003.txt"):
        score(tmp_path, "baseline")
