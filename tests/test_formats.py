"""Exact readers/writers: real-format sample lines, round trips, and every bad-input case."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sim2real.errors import DataError
from sim2real.formats import kitti, vkitti2, yolo
from sim2real.formats.images import image_size, read_rgb, write_gray, write_image

BBOX_HEADER = "frame cameraID trackID left right top bottom number_pixels truncation_ratio occupancy_ratio isMoving"


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_bbox_sample_row_from_the_dataset_readme(tmp_path):
    p = write(tmp_path, "bbox.txt", BBOX_HEADER + "\n0 0 0 988 1241 159 374 41767 0.4230517 0.7678463 False\n"
              "0 1 0 980 1241 159 374 42000 0.4 0.75 1\n")
    df = vkitti2.read_bbox(p)
    assert list(df.columns) == BBOX_HEADER.split()
    assert df.loc[0, "right"] == 1241 and df.loc[0, "left"] == 988  # left, RIGHT, top, bottom order
    assert df["isMoving"].tolist() == [False, True]
    assert df["isMoving"].dtype == bool
    occ = df.loc[0, "number_pixels"] / ((df.loc[0, "right"] - df.loc[0, "left"]) * (df.loc[0, "bottom"] - df.loc[0, "top"]))
    assert occ == pytest.approx(df.loc[0, "occupancy_ratio"], abs=1e-6)


def test_info_intrinsic_samples(tmp_path):
    info = vkitti2.read_info(write(tmp_path, "info.txt", "trackID label model color\n0 Car Sedan4Door Black\n3 Van Van White\n"))
    assert info.to_dict("list") == {"trackID": [0, 3], "label": ["Car", "Van"], "model": ["Sedan4Door", "Van"], "color": ["Black", "White"]}
    intr = vkitti2.read_intrinsic(write(tmp_path, "intrinsic.txt", "frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]\n0 0 725.0087 725.0087 620.5 187\n"))
    assert intr.loc[0, "K[0,2]"] == 620.5


def test_unknown_info_label_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"info.txt:3: unknown label 'Bus'"):
        vkitti2.read_info(write(tmp_path, "info.txt", "trackID label model color\n0 Car A B\n1 Bus A B\n"))


def test_kitti_label_samples_and_round_trip(tmp_path):
    text = ("Pedestrian 0.00 0 -0.20 712.40 143.00 810.73 307.92 1.89 0.48 1.20 1.84 1.47 8.41 0.01\n"
            "DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10\n")
    p = write(tmp_path, "000000.txt", text)
    df = kitti.read_label(p)
    assert list(df.columns) == kitti.LABEL_COLUMNS
    assert df["type"].tolist() == ["Pedestrian", "DontCare"] and df.loc[1, "occluded"] == -1
    out = tmp_path / "out.txt"
    kitti.write_label(out, df)
    pd.testing.assert_frame_equal(kitti.read_label(out), df)
    assert out.read_text() == text  # byte-exact: 2 decimals, DontCare placeholders as integers


def test_kitti_result_file_with_score(tmp_path):
    p = write(tmp_path, "r.txt", "Car -1 -1 -10 10.00 20.00 110.00 90.00 -1 -1 -1 -1000 -1000 -1000 -10 0.9312\n")
    df = kitti.read_label(p)
    assert list(df.columns) == kitti.RESULT_COLUMNS and df.loc[0, "score"] == pytest.approx(0.9312)
    kitti.write_label(tmp_path / "r2.txt", df)
    pd.testing.assert_frame_equal(kitti.read_label(tmp_path / "r2.txt"), df)


@pytest.mark.parametrize("body,match", [
    ("0 0 0 1 2 3 4 5 0.1 0.2\n", r"bbox.txt:2: expected 11 fields, got 10"),
    ("0 0 0 1 2 3 4 5 0.1 0.2 False\n0 0 x 1 2 3 4 5 0.1 0.2 False\n", r"bbox.txt:3: column 'trackID': expected a number, got 'x'"),
    ("0 0 0 1 2 3 4 5 0.1 0.2 maybe\n", r"bbox.txt:2: column 'isMoving': expected True/False"),
    ("0 0 0 1.5 2 3 4 5 0.1 0.2 True\n", r"bbox.txt:2: column 'left': expected an integer"),
])
def test_bbox_bad_rows_name_file_and_line(tmp_path, body, match):
    with pytest.raises(DataError, match=match):
        vkitti2.read_bbox(write(tmp_path, "bbox.txt", BBOX_HEADER + "\n" + body))


def test_wrong_header_and_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"bbox.txt:1: wrong header"):
        vkitti2.read_bbox(write(tmp_path, "bbox.txt", "frame camera track\n0 0 0\n"))
    with pytest.raises(DataError, match=r"nope/bbox.txt: file not found"):
        vkitti2.read_bbox(tmp_path / "nope" / "bbox.txt")


def test_kitti_bad_column_count_and_type(tmp_path):
    with pytest.raises(DataError, match=r"l.txt:2: expected 15 or 16 fields, got 5"):
        kitti.read_label(write(tmp_path, "l.txt", "Car 0 0 0 1 2 3 4 1 1 1 1 1 1 0\nCar 0 0 0 1\n"))
    with pytest.raises(DataError, match=r"l.txt:1: unknown object type 'Bus'"):
        kitti.read_label(write(tmp_path, "l.txt", "Bus 0 0 0 1 2 3 4 1 1 1 1 1 1 0\n"))


def test_depth_round_trip_and_sky(tmp_path):
    depth = np.array([[1.5, 655.35], [np.inf, 80.01]], np.float32)
    vkitti2.write_depth(tmp_path / "d.png", depth)
    got = vkitti2.read_depth_m(tmp_path / "d.png")
    assert got.dtype == np.float32
    assert got[0, 0] == pytest.approx(1.5) and got[1, 1] == pytest.approx(80.01)
    assert np.isinf(got[0, 1]) and np.isinf(got[1, 0])  # 65535 cm = far plane = sky


def test_8bit_depth_is_rejected(tmp_path):
    write_gray(tmp_path / "d.png", np.full((4, 4), 200, np.uint8))
    with pytest.raises(DataError, match=r"d.png: depth must be a 16-bit PNG"):
        vkitti2.read_depth_m(tmp_path / "d.png")


def test_unreadable_image(tmp_path):
    p = tmp_path / "rgb_00000.jpg"
    p.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=r"rgb_00000.jpg: unreadable image"):
        read_rgb(p)
    with pytest.raises(DataError, match=r"rgb_00000.jpg: unreadable image"):
        image_size(p)


def test_box_outside_image(tmp_path):
    p = write(tmp_path, "bbox.txt", BBOX_HEADER + "\n0 0 0 10 20 5 15 5 0 0.1 False\n0 0 1 1200 1242 5 15 5 0 0.1 False\n")
    df, lines = vkitti2.read_bbox(p, with_lines=True)
    with pytest.raises(DataError, match=r"bbox.txt:3: box \(left=1200, right=1242.*outside the 1242x375 image"):
        vkitti2.validate_boxes(df, 1242, 375, p, lines)
    vkitti2.validate_boxes(df.iloc[:1], 1242, 375, p, lines[:1])


def test_class_segmentation_colors(tmp_path):
    colors = np.array(list(vkitti2.CATEGORY_COLORS.values()), np.uint8)
    idx = np.array([[0, 1, 12], [1, 12, 5]], np.uint8)
    write_image(tmp_path / "classgt_00000.png", colors[idx])
    assert (vkitti2.read_class_seg(tmp_path / "classgt_00000.png") == idx).all()
    bad = colors[idx].copy(); bad[0, 0] = (1, 2, 3)
    write_image(tmp_path / "bad.png", bad)
    with pytest.raises(DataError, match=r"bad.png: pixel \(0, 0\) has colour \(1, 2, 3\) not listed"):
        vkitti2.read_class_seg(tmp_path / "bad.png")


def test_colors_txt_round_trip(tmp_path):
    vkitti2.write_colors(tmp_path / "colors.txt")
    assert vkitti2.read_colors(tmp_path / "colors.txt") == vkitti2.CATEGORY_COLORS
    assert (tmp_path / "colors.txt").read_text().splitlines()[0] == "Category r g b"


def test_layout_matches_folder_case_insensitively(tmp_path):
    d = tmp_path / "vkitti_2.0.3_classsegmentation" / "Scene01" / "clone" / "frames" / "classsegmentation" / "Camera_0"
    d.mkdir(parents=True)
    (d / "classgt_00003.png").write_bytes(b"x")
    layout = vkitti2.Layout.from_root(tmp_path)
    assert layout.frame_path("classSegmentation", "Scene01", "clone", 0, 3).is_file()


def test_yolo_conversion_and_data_yaml(tmp_path):
    cxcywh = yolo.boxes_to_yolo([988], [159], [1241], [374], 1242, 375)
    assert cxcywh[0] == pytest.approx([(988 + 1241) / 2 / 1242, (159 + 374) / 2 / 375, 253 / 1242, 215 / 375])
    assert yolo.yolo_to_boxes(cxcywh, 1242, 375)[0] == pytest.approx([988, 159, 1241, 374])
    yolo.write_labels(tmp_path / "a.txt", [2], cxcywh)
    df = yolo.read_labels(tmp_path / "a.txt")
    assert df["cls"].tolist() == [2] and df["w"].iloc[0] == pytest.approx(253 / 1242, abs=1e-6)
    assert yolo.read_labels(tmp_path / "missing.txt").empty
    yolo.write_data_yaml(tmp_path / "data.yaml", tmp_path, ["Car", "Van"])
    import yaml
    data = yaml.safe_load((tmp_path / "data.yaml").read_text())
    assert data["names"] == {0: "Car", 1: "Van"} and data["train"] == "images/train"
