"""The KITTI 2D metric against hand-computed cases (devkit rules, see sim2real/metrics/kitti_ap.py).

Hand computation used below: with perfect detections every selected threshold has precision 1,
so AP|R40 = (number of filled positions - 1) / 40 and AP|R11 = (filled positions among
0, 4, ..., 40) / 11. getThresholds pushes detection i (0-based, scores descending) when the
midpoint of its recall and the next one, (2i + 3) / (2 n_gt), is >= the current sample
position k / 40, and always pushes the last one.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sim2real.errors import DataError
from sim2real.formats import kitti
from sim2real.metrics import kitti_ap as K


def car_grid(n: int, height: float = 50.0, start: int = 0):
    """n non-overlapping 50x`height` px boxes, one per image slot (returned as a list of boxes)."""
    return [[10.0 + 60 * (i % 20), 10.0 + 80 * (i // 20), 60.0 + 60 * (i % 20), 10.0 + 80 * (i // 20) + height]
            for i in range(start, start + n)]


def image(types, boxes, occluded=None, truncated=None, score=None):
    return K.Objects.make(types, boxes, truncated=truncated, occluded=occluded, score=score)


def perfect(n: int):
    boxes = car_grid(n)
    gt = image(["Car"] * n, boxes)
    det = image(["Car"] * n, boxes, score=np.linspace(0.99, 0.5, n))
    return gt, det


def car_ap(gts, dets):
    return K.evaluate(gts, dets, ["Car"])["Car"]


def test_box_overlap_union_and_detection_area():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]], float)
    iou = K.box_overlap(a, b)
    assert iou[0, 0] == pytest.approx(50 / 150)
    assert iou[0, 1] == 0.0
    assert iou[0, 2] == pytest.approx(25 / 100)
    # intersection over the area of the first box (DontCare criterion)
    assert K.box_overlap(b, a, "a")[:, 0] == pytest.approx([0.5, 0.0, 1.0])


@pytest.mark.parametrize("n, r40, r11", [
    (50, 100.0, 100.0),         # >= 41 objects: all 41 positions filled
    (41, 100.0, 100.0),
    (40, 97.5, 100 * 10 / 11),  # 40 thresholds: position 40 stays empty
    (1, 0.0, 100 / 11),         # single detection: only position 0 (counted by R11, not R40)
])
def test_perfect_detections(n, r40, r11):
    gt, det = perfect(n)
    res = car_ap([gt], [det])
    for d in K.DIFFICULTIES:
        assert res[d] == pytest.approx(r40)
        assert res[f"{d}_R11"] == pytest.approx(r11)
        assert res[f"n_gt_{d}"] == n


def test_perfect_split_over_images_equals_one_image():
    gt, det = perfect(50)
    gts = [image(gt.type[i:i + 5], gt.box_px[i:i + 5]) for i in range(0, 50, 5)]
    dets = [image(det.type[i:i + 5], det.box_px[i:i + 5], score=det.score[i:i + 5]) for i in range(0, 50, 5)]
    assert car_ap(gts, dets)["moderate"] == pytest.approx(100.0)


def test_one_missed_easy_car():
    gt, det = perfect(50)
    keep = np.arange(50) != 17
    det = image(det.type[keep], det.box_px[keep], score=det.score[keep])
    res = car_ap([gt], [det])
    # n_gt 50, 49 TPs: midpoints (2i+3)/100 reach 0.97 at i = 47, so positions 0..38 are filled
    # before the last TP, which fills position 39; position 40 stays 0.
    assert res["easy"] == pytest.approx(97.5)
    assert res["easy_R11"] == pytest.approx(100 * 10 / 11)


def test_missed_car_that_is_not_easy_only_hurts_moderate_and_hard():
    gt, det = perfect(50)
    extra = car_grid(1, start=50)
    gt = image(list(gt.type) + ["Car"], list(gt.box_px) + extra, occluded=[0] * 50 + [1])
    res = car_ap([gt], [det])
    assert res["easy"] == pytest.approx(100.0)
    assert res["n_gt_easy"] == 50 and res["n_gt_moderate"] == 51
    # n_gt 51, 50 TPs: midpoints (2i+3)/102 reach 99/102 = 0.97 at i = 48 -> positions 0..38,
    # the last TP fills 39.
    assert res["moderate"] == pytest.approx(97.5)
    assert res["hard"] == pytest.approx(97.5)


def test_false_positive_with_top_score_and_dontcare():
    gt, det = perfect(50)
    fp_box = [[1300.0, 10.0, 1360.0, 60.0]]  # no ground truth there
    det_fp = image(list(det.type) + ["Car"], list(det.box_px) + fp_box, score=list(det.score) + [1.0])
    res = car_ap([gt], [det_fp])
    # the FP is above every threshold: precision tp/(tp+1), interpolated to max = 50/51 everywhere
    assert res["easy"] == pytest.approx(100 * 50 / 51)
    assert res["easy_R11"] == pytest.approx(100 * 50 / 51)
    # a DontCare region covering the detection absorbs it
    dc = [[1290.0, 0.0, 1400.0, 100.0]]
    gt_dc = image(list(gt.type) + ["DontCare"], list(gt.box_px) + dc)
    assert car_ap([gt_dc], [det_fp])["easy"] == pytest.approx(100.0)
    # ... but only when the intersection exceeds 0.7 of the detection's area (here 0.5)
    half = [[1330.0, 0.0, 1400.0, 100.0]]
    gt_half = image(list(gt.type) + ["DontCare"], list(gt.box_px) + half)
    assert car_ap([gt_half], [det_fp])["easy"] == pytest.approx(100 * 50 / 51)


def test_van_hit_is_ignored_but_truck_hit_is_a_false_positive():
    gt, det = perfect(50)
    box = car_grid(1, start=50)
    det_x = image(list(det.type) + ["Car"], list(det.box_px) + box, score=list(det.score) + [1.0])
    gt_van = image(list(gt.type) + ["Van"], list(gt.box_px) + box)
    res = car_ap([gt_van], [det_x])
    assert res["easy"] == pytest.approx(100.0) and res["n_gt_easy"] == 50
    gt_truck = image(list(gt.type) + ["Truck"], list(gt.box_px) + box)
    assert car_ap([gt_truck], [det_x])["easy"] == pytest.approx(100 * 50 / 51)
    # a missed Van is no false negative either
    assert car_ap([gt_van], [det])["hard"] == pytest.approx(100.0)


def test_car_below_25_px_is_ignored_with_or_without_detection():
    gt, det = perfect(50)
    small = car_grid(1, height=20.0, start=50)
    gt_s = image(list(gt.type) + ["Car"], list(gt.box_px) + small)
    for d in (det, image(list(det.type) + ["Car"], list(det.box_px) + small, score=list(det.score) + [1.0])):
        res = car_ap([gt_s], [d])
        for name in K.DIFFICULTIES:
            assert res[name] == pytest.approx(100.0)
            assert res[f"n_gt_{name}"] == 50


# The rule at the height boundaries, from the compiled 2019 (R40) devkit (evaluate_object.cpp,
# cleanData): ground truth is ignored when ``height <= MIN_HEIGHT`` (40 / 25 / 25 px, height a
# double, y2 - y1); a detection is ignored when ``int32_t(|y1 - y2|) < MIN_HEIGHT``.
def test_height_thresholds_follow_the_cpp_devkit():
    # ground truth exactly 40.00 px tall is NOT easy (ignored); it is moderate and hard.
    # The devkit prints easy: 0 counted GT and AP 0; this module reports n_gt 0 and AP None.
    gt, det = perfect(50)
    gt40 = image(gt.type, car_grid(50, height=40.0))
    det40 = image(det.type, car_grid(50, height=40.0), score=det.score)
    res = car_ap([gt40], [det40])
    assert res["n_gt_easy"] == 0 and res["easy"] is None
    assert res["n_gt_moderate"] == 50 and res["moderate"] == pytest.approx(100.0)
    # a detection 39.5 px tall is truncated to 39 px and ignored at easy: the 50 px GT becomes a miss
    det395 = image(det.type, [[b[0], b[1], b[2], b[1] + 39.5] for b in car_grid(50)], score=det.score)
    assert car_ap([gt], [det395])["easy"] == pytest.approx(0.0)


@pytest.mark.parametrize("min_px, counted_in, ignored_in", [
    (40.0, ("moderate", "hard"), ("easy",)),
    (25.0, (), ("easy", "moderate", "hard")),
])
def test_ground_truth_exactly_at_min_height_is_ignored(min_px, counted_in, ignored_in):
    """GT of height == MIN_HEIGHT is ignored (devkit ``height <= MIN_HEIGHT``): neither TP nor FN,
    and a detection on it is not an FP. 50 cars of 60 px carry every difficulty."""
    tall = car_grid(50, height=60.0)
    edge = car_grid(50, height=min_px, start=50)
    gt = image(["Car"] * 100, tall + edge)
    scores = np.linspace(0.99, 0.5, 100)
    # detections on all 100 cars: the ones on ignored edge cars are neither TP nor FP
    res = car_ap([gt], [image(["Car"] * 100, tall + edge, score=scores)])
    for d in ignored_in:
        assert res[f"n_gt_{d}"] == 50 and res[d] == pytest.approx(100.0), d
    for d in counted_in:
        assert res[f"n_gt_{d}"] == 100 and res[d] == pytest.approx(100.0), d
    # no detections on the edge cars: no FN where they are ignored, a recall loss where counted
    res = car_ap([gt], [image(["Car"] * 50, tall, score=scores[:50])])
    for d in ignored_in:
        assert res[d] == pytest.approx(100.0), d
    for d in counted_in:
        assert res[d] == pytest.approx(50.0), d


def test_real_box_from_78_08_to_103_08_is_exactly_25_px_and_not_moderate():
    # 103.08 - 78.08 == 25.0 in float64, as the devkit computes it from the label file
    gt = image(["Car"], [[100.0, 78.08, 160.0, 103.08]])
    res = car_ap([gt], [image(["Car"], [[100.0, 78.08, 160.0, 103.08]], score=[0.9])])
    assert res["n_gt_moderate"] == 0 and res["n_gt_hard"] == 0


@pytest.mark.parametrize("min_px, difficulty", [(40.0, "easy"), (25.0, "moderate")])
def test_detection_exactly_at_min_height_counts(min_px, difficulty):
    """Detections keep the devkit's ``height < MIN_HEIGHT`` (after int truncation): exactly
    40.00 / 25.00 px counts, 39.99 / 24.99 px (truncated to 39 / 24) is ignored."""
    gt_h = min_px + 5.0  # GT comfortably inside the difficulty; det top-aligned: IoU = min / (min + 5) > 0.7
    gt = image(["Car"] * 50, car_grid(50, height=gt_h))
    scores = np.linspace(0.99, 0.5, 50)
    at = image(["Car"] * 50, [[b[0], b[1], b[2], b[1] + min_px] for b in car_grid(50, height=gt_h)], score=scores)
    assert car_ap([gt], [at])[difficulty] == pytest.approx(100.0)
    below = image(["Car"] * 50, [[b[0], b[1], b[2], b[1] + min_px - 0.01] for b in car_grid(50, height=gt_h)],
                  score=scores)
    assert car_ap([gt], [below])[difficulty] == pytest.approx(0.0)


def test_iou_must_be_strictly_greater_than_0_7():
    gt = image(["Car"] * 50, car_grid(50))
    boxes = [[b[0], b[1], b[0] + 35.0, b[3]] for b in car_grid(50)]  # 35/50 = IoU 0.7 exactly
    det = image(["Car"] * 50, boxes, score=np.linspace(0.99, 0.5, 50))
    assert car_ap([gt], [det])["easy"] == pytest.approx(0.0)


def test_get_thresholds_samples_recall_positions():
    scores = np.linspace(1.0, 0.01, 80)
    # n_gt 80: every second TP (and the first) is a sample
    t = K.get_thresholds(scores[:40], 80)
    assert len(t) == 21
    assert t[0] == pytest.approx(1.0) and t[1] == pytest.approx(scores[1]) and t[2] == pytest.approx(scores[3])


def test_half_recall_full_precision():
    gt, det = perfect(80)
    det = image(det.type[:40], det.box_px[:40], score=det.score[:40])
    res = car_ap([gt], [det])
    assert res["easy"] == pytest.approx(50.0)            # positions 0..20 filled
    assert res["easy_R11"] == pytest.approx(100 * 6 / 11)


def test_no_ground_truth_gives_none():
    res = K.evaluate([image([], np.zeros((0, 4)))], [image([], np.zeros((0, 4)))], ["Pedestrian"])
    assert res["Pedestrian"]["easy"] is None and res["Pedestrian"]["n_gt_easy"] == 0


def test_pedestrian_uses_0_5_and_person_sitting_neighbour():
    gt = image(["Pedestrian"] * 50 + ["Person_sitting"], car_grid(51))
    boxes = [[b[0], b[1], b[0] + 30.0, b[3]] for b in car_grid(51)]  # IoU 0.6 > 0.5
    det = image(["Pedestrian"] * 51, boxes, score=list(np.linspace(0.99, 0.5, 50)) + [1.0])
    assert K.evaluate([gt], [det], ["Pedestrian"])["Pedestrian"]["easy"] == pytest.approx(100.0)


def _write(folder, name, df):
    kitti.write_label(folder / f"{name}.txt", df)


def _frame(types, boxes, score=None, occluded=None):
    n = len(types)
    df = pd.DataFrame({"type": types, "truncated": 0.0, "occluded": occluded or [0] * n, "alpha": -10.0})
    b = np.asarray(boxes, float).reshape(n, 4)
    for j, c in enumerate(("left", "top", "right", "bottom")):
        df[c] = b[:, j]
    for c in ("h", "w", "l", "x", "y", "z", "rotation_y"):
        df[c] = -1.0
    if score is not None:
        df["score"] = score
    return df


def test_cli_json_over_folders(tmp_path):
    gt_dir, det_dir = tmp_path / "gt", tmp_path / "det"
    boxes = car_grid(50)
    for k in range(5):  # 5 images x 10 cars + one DontCare each
        sl = boxes[10 * k:10 * k + 10]
        _write(gt_dir, f"{k:06d}", _frame(["Car"] * 10 + ["DontCare"], sl + [[1300, 0, 1400, 100]]))
        _write(det_dir, f"{k:06d}", _frame(["Car"] * 10 + ["Car"], sl + [[1310, 10, 1390, 90]],
                                           score=list(np.linspace(0.9, 0.5, 10)) + [0.95]))
    out = subprocess.run([sys.executable, "-m", "sim2real.metrics.kitti_ap", str(gt_dir), str(det_dir),
                          "--classes", "Car", "--json"], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)
    assert set(res) == {"Car"}
    assert res["Car"]["easy"] == pytest.approx(100.0) and res["Car"]["hard_R11"] == pytest.approx(100.0)
    # the table output names the class
    table = subprocess.run([sys.executable, "-m", "sim2real.metrics.kitti_ap", str(gt_dir), str(det_dir),
                            "--classes", "Car"], capture_output=True, text=True, check=True).stdout
    assert "Car" in table and "AP|R40" in table


def test_missing_result_file_names_it(tmp_path):
    gt_dir, det_dir = tmp_path / "gt", tmp_path / "det"
    _write(gt_dir, "000001", _frame(["Car"], [[0, 0, 50, 50]]))
    det_dir.mkdir()
    with pytest.raises(DataError, match="000001.txt"):
        K.evaluate_folders(gt_dir, det_dir, ["Car"])
    (det_dir / "000001.txt").write_text("")
    assert K.evaluate_folders(gt_dir, det_dir, ["Car"])["Car"]["easy"] == pytest.approx(0.0)


# ---------------------------------------------------------------- a literal scalar transcription
def _ref_eval_class(gts, dets, cls, diff):
    """Loop-by-loop transcription of the devkit's cleanData/computeStatistics/eval_class."""
    neighbour, min_ov = K.CLASS_RULES[cls]

    def ov(a, b, crit):
        iw = min(a[2], b[2]) - max(a[0], b[0]); ih = min(a[3], b[3]) - max(a[1], b[1])
        if iw <= 0 or ih <= 0:
            return 0.0
        inter = iw * ih; aa = (a[2] - a[0]) * (a[3] - a[1]); ba = (b[2] - b[0]) * (b[3] - b[1])
        return inter / (aa + ba - inter) if crit == -1 else inter / aa

    def clean(gt, det):
        ig, idt, n = [], [], 0
        for i in range(len(gt)):
            t = gt.type[i]
            vc = 1 if t == cls else (0 if t == neighbour else -1)
            h = gt.box_px[i, 3] - gt.box_px[i, 1]
            ign = (gt.occluded[i] > K.MAX_OCCLUSION[diff] or gt.truncated[i] > K.MAX_TRUNCATION[diff]
                   or h <= K.MIN_HEIGHT_PX[diff])
            if vc == 1 and not ign:
                ig.append(0); n += 1
            elif vc == 0 or (ign and vc == 1):
                ig.append(1)
            else:
                ig.append(-1)
        dc = [gt.box_px[i] for i in range(len(gt)) if gt.type[i] == "DontCare"]
        for j in range(len(det)):
            h = int(abs(det.box_px[j, 1] - det.box_px[j, 3]))
            idt.append(1 if h < K.MIN_HEIGHT_PX[diff] else (0 if det.type[j] == cls else -1))
        return ig, idt, dc, n

    def stats(gt, det, dc, ig, idt, compute_fp, thresh=0.0):
        NO = -10000000.0
        assigned = [False] * len(det)
        below = [compute_fp and det.score[j] < thresh for j in range(len(det))]
        tp = fp = fn = 0; v = []
        for i in range(len(gt)):
            if ig[i] == -1:
                continue
            idx, valid, maxo, aid = -1, NO, 0.0, False
            for j in range(len(det)):
                if idt[j] == -1 or assigned[j] or below[j]:
                    continue
                o = ov(det.box_px[j], gt.box_px[i], -1)
                if not compute_fp and o > min_ov and det.score[j] > valid:
                    idx, valid = j, det.score[j]
                elif compute_fp and o > min_ov and (o > maxo or aid) and idt[j] == 0:
                    maxo, idx, valid, aid = o, j, 1, False
                elif compute_fp and o > min_ov and valid == NO and idt[j] == 1:
                    idx, valid, aid = j, 1, True
            if valid == NO and ig[i] == 0:
                fn += 1
            elif valid != NO and (ig[i] == 1 or idt[idx] == 1):
                assigned[idx] = True
            elif valid != NO:
                tp += 1; v.append(det.score[idx]); assigned[idx] = True
        if compute_fp:
            for j in range(len(det)):
                if not (assigned[j] or idt[j] == -1 or idt[j] == 1 or below[j]):
                    fp += 1
            nstuff = 0
            for d in dc:
                for j in range(len(det)):
                    if assigned[j] or idt[j] in (-1, 1) or below[j]:
                        continue
                    if ov(det.box_px[j], d, 0) > min_ov:
                        assigned[j] = True; nstuff += 1
            fp -= nstuff
        return tp, fp, fn, v

    n_gt, v, cleaned = 0, [], []
    for gt, det in zip(gts, dets):
        ig, idt, dc, n = clean(gt, det)
        n_gt += n; cleaned.append((ig, idt, dc))
        v += stats(gt, det, dc, ig, idt, False)[3]
    th = K.get_thresholds(v, n_gt)
    prec = [0.0] * 41
    for t, thr in enumerate(th):
        tp = fp = 0
        for (gt, det), (ig, idt, dc) in zip(zip(gts, dets), cleaned):
            a, b, _, _ = stats(gt, det, dc, ig, idt, True, thr)
            tp += a; fp += b
        prec[t] = tp / (tp + fp)
    for t in range(len(th)):
        prec[t] = max(prec[t:])
    return np.array(prec)


@pytest.mark.parametrize("seed", range(4))
def test_matches_scalar_devkit_transcription_on_random_scenes(seed):
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for _ in range(30):
        n = int(rng.integers(0, 10))
        x = rng.uniform(0, 900, n); y = rng.uniform(0, 250, n)
        gb = np.stack([x, y, x + rng.uniform(15, 200, n), y + rng.uniform(15, 120, n)], 1)
        jit = gb + rng.normal(0, 2, gb.shape)
        m = int(rng.integers(0, 6))
        x2 = rng.uniform(0, 900, m); y2 = rng.uniform(0, 250, m)
        extra = np.stack([x2, y2, x2 + rng.uniform(15, 150, m), y2 + rng.uniform(15, 100, m)], 1)
        db = np.concatenate([jit[rng.uniform(size=n) < 0.8], extra])
        gts.append(K.Objects.make(rng.choice(["Car", "Van", "Truck", "DontCare", "Car"], n), gb,
                                  occluded=rng.choice([0, 0, 1, 2, 3], n), truncated=rng.uniform(0, 0.4, n)))
        dets.append(K.Objects.make(rng.choice(["Car", "Car", "Van"], len(db)), db,
                                   score=np.round(rng.uniform(0, 1, len(db)), 2)))
    for d in range(3):
        ours, n_gt = K.precision_curve(gts, dets, "Car", d)
        if n_gt:
            np.testing.assert_allclose(ours, _ref_eval_class(gts, dets, "Car", d))
