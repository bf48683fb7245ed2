"""Every dedupe rule, with counts; every input row kept or dropped exactly once."""
from __future__ import annotations

import pandas as pd
import pytest
import yaml

from sim2real.errors import ConfigError
from sim2real.labels import DEFAULT_RULES, REASONS, count_reasons, dedupe, iou_matrix
from tests.conftest import ROOT


def row(track, l, r, t, b, npx, label="Car", cam=0, frame=0, trunc=0.0):
    return dict(frame=frame, cameraID=cam, trackID=track, left=l, right=r, top=t, bottom=b, number_pixels=npx,
                truncation_ratio=trunc, occupancy_ratio=0.5, isMoving=False, label=label)


def boxes(*rows):
    return pd.DataFrame(list(rows))


def test_defaults_match_params_yaml():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    shipped = {**params["dedupe"], "camera": params["data"]["camera"], "classes": params["classes"]}
    assert shipped == DEFAULT_RULES


def test_each_rule_with_counts():
    df = boxes(
        row(0, 100, 200, 100, 200, 5000),                       # kept
        row(0, 100, 200, 100, 200, 5000, cam=1),                # other_camera
        row(1, 300, 340, 150, 180, 0),                          # hidden
        row(2, 500, 505, 170, 174, 12),                         # sliver (5x4 px)
        row(3, 600, 640, 150, 180, 10),                         # low_visibility
        row(4, 0, 60, 100, 200, 3000, trunc=0.9),               # truncated
        row(5, 100, 200, 100, 200, 2000, label="Van"),          # class_conflict (same box as 0, fewer px)
        row(6, 700, 800, 100, 200, 4000),                       # kept
        row(7, 702, 800, 101, 200, 3500),                       # duplicate of 6 (IoU ~0.97)
        row(8, 900, 1000, 100, 200, 4000, label="Truck"),       # kept
    )
    kept, dropped = dedupe(df)
    assert sorted(kept["trackID"]) == [0, 6, 8]
    assert kept.set_index("trackID")["class_id"].to_dict() == {0: 0, 6: 0, 8: 2}
    counts = count_reasons(dropped)
    assert counts == {"other_camera": 1, "hidden": 1, "sliver": 1, "low_visibility": 1, "truncated": 1,
                      "class_not_in_classes": 0, "class_conflict": 1, "duplicate": 1}
    assert dropped.set_index("trackID").loc[5, "reason"] == "class_conflict"
    assert len(kept) + len(dropped) == len(df)


def test_every_row_exactly_once():
    df = boxes(*[row(i, 10 * i, 10 * i + 30, 50, 90, 500 if i % 3 else 0, label=["Car", "Van", "Truck"][i % 3]) for i in range(30)])
    kept, dropped = dedupe(df)
    ids = sorted(kept["trackID"].tolist() + dropped["trackID"].tolist())
    assert ids == list(range(30))
    assert set(dropped["reason"]) <= set(REASONS)


def test_class_conflict_policies_and_tie_break():
    a, b = row(0, 100, 200, 100, 200, 1000, "Car"), row(1, 100, 200, 100, 200, 3000, "Van")
    kept, dropped = dedupe(boxes(a, b))
    assert kept["trackID"].tolist() == [1] and kept["label"].tolist() == ["Van"]  # Van is not turned into Car
    kept, dropped = dedupe(boxes(a, b), {"class_conflict": "drop_both"})
    assert kept.empty and (dropped["reason"] == "class_conflict").sum() == 2
    tie = dedupe(boxes(row(3, 0, 50, 0, 50, 900, "Van"), row(2, 0, 50, 0, 50, 900, "Car")))[0]
    assert tie["trackID"].tolist() == [2]


def test_van_dropped_only_when_classes_exclude_it():
    df = boxes(row(0, 0, 50, 0, 50, 900, "Van"))
    assert dedupe(df, {"classes": ["Car", "Truck"]})[1]["reason"].tolist() == ["class_not_in_classes"]
    assert dedupe(df, {"classes": ["Car", "Van"]})[0]["class_id"].tolist() == [1]


def test_frames_are_deduplicated_independently():
    df = boxes(row(0, 0, 50, 0, 50, 900, frame=0), row(0, 0, 50, 0, 50, 900, frame=1))
    assert len(dedupe(df)[0]) == 2


def test_bad_rules():
    with pytest.raises(ConfigError, match="unknown rule"):
        dedupe(boxes(row(0, 0, 50, 0, 50, 900)), {"min_pixels": 3})
    with pytest.raises(ConfigError, match="class_conflict"):
        dedupe(boxes(row(0, 0, 50, 0, 50, 900)), {"class_conflict": "random"})


def test_iou_matrix():
    m = iou_matrix(pd.DataFrame([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]).to_numpy())
    assert m[0, 1] == pytest.approx(50 / 150) and m[0, 2] == 0 and m[1, 1] == 1
