"""The miniature world: exact formats, internal consistency, planted quirks, determinism;
ingest on it, including bad-input cases."""
from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from sim2real.demo import generate
from sim2real.errors import DataError
from sim2real.formats import kitti, vkitti2
from sim2real.formats.images import image_size, read_rgb
from sim2real.labels import dedupe
from sim2real.manifest import index_kitti, index_vkitti2_sequence

ARGS = dict(seed=3, scenes=1, frames_per_scene=4, variations=["clone", "fog"], real_frames=4, real_seg_every=2)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate(out, workers=1, **ARGS)
    return out


def tree_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_generator_is_deterministic_across_worker_counts(world, tmp_path):
    generate(tmp_path, workers=2, **ARGS)
    files = tree_files(world)
    assert files == tree_files(tmp_path) and len(files) > 40
    match, mismatch, errors = filecmp.cmpfiles(world, tmp_path, files, shallow=False)
    assert not mismatch and not errors


def test_exact_vkitti2_layout(world):
    root = world / "vkitti2"
    for rel in ["vkitti_2.0.3_rgb/Scene01/clone/frames/rgb/Camera_0/rgb_00000.jpg",
                "vkitti_2.0.3_rgb/Scene01/fog/frames/rgb/Camera_1/rgb_00003.jpg",
                "vkitti_2.0.3_depth/Scene01/clone/frames/depth/Camera_0/depth_00000.png",
                "vkitti_2.0.3_classSegmentation/Scene01/clone/frames/classSegmentation/Camera_0/classgt_00000.png",
                "vkitti_2.0.3_instanceSegmentation/Scene01/clone/frames/instanceSegmentation/Camera_0/instancegt_00000.png",
                *[f"vkitti_2.0.3_textgt/Scene01/clone/{n}.txt" for n in ("bbox", "colors", "extrinsic", "info", "intrinsic", "pose")]]:
        assert (root / rel).is_file(), rel
    assert image_size(root / "vkitti_2.0.3_rgb/Scene01/clone/frames/rgb/Camera_0/rgb_00000.jpg") == (1242, 375)
    layout = vkitti2.Layout.from_root(root)
    ext = vkitti2.read_extrinsic(layout.textgt("Scene01", "clone", "extrinsic"))
    assert ext[["m4,1", "m4,2", "m4,3", "m4,4"]].to_numpy().tolist()[0] == [0, 0, 0, 1]
    pose = vkitti2.read_pose(layout.textgt("Scene01", "clone", "pose"))
    assert len(pose.columns) == 19 and len(pose) > 0


def test_bbox_rows_agree_with_masks(world):
    layout = vkitti2.Layout.from_root(world / "vkitti2")
    bbox = vkitti2.read_bbox(layout.textgt("Scene01", "clone", "bbox"))
    info = vkitti2.read_info(layout.textgt("Scene01", "clone", "info"))
    assert set(bbox["cameraID"]) == {0, 1}  # both cameras interleaved in one file
    inst = vkitti2.read_instance_seg(layout.frame_path("instanceSegmentation", "Scene01", "clone", 0, 2))
    depth = vkitti2.read_depth_m(layout.frame_path("depth", "Scene01", "clone", 0, 2))
    cat = vkitti2.read_class_seg(layout.frame_path("classSegmentation", "Scene01", "clone", 0, 2))
    rendered = set(np.unique(inst)) - {0}
    rows = bbox[(bbox.frame == 2) & (bbox.cameraID == 0) & (bbox.trackID + 1).isin(rendered)]
    assert len(rows) >= 3
    for r in rows.itertuples():
        mask = inst == r.trackID + 1
        assert mask.sum() == r.number_pixels
        ys, xs = np.nonzero(mask)
        assert xs.min() >= r.left and xs.max() <= r.right and ys.min() >= r.top and ys.max() <= r.bottom
        assert r.occupancy_ratio == pytest.approx(r.number_pixels / ((r.right - r.left) * (r.bottom - r.top)), abs=1e-6)
        label = info.set_index("trackID").loc[r.trackID, "label"]
        assert (cat[mask] == vkitti2.category_index(label)).all()
        assert np.isfinite(depth[mask]).all() and depth[mask].min() > 1
    sky = cat == vkitti2.category_index("Sky")
    assert np.isinf(depth[sky]).all() and (inst[sky] == 0).all()


def test_quirks_are_planted(world):
    layout = vkitti2.Layout.from_root(world / "vkitti2")
    bbox = vkitti2.read_bbox(layout.textgt("Scene01", "clone", "bbox"))
    info = vkitti2.read_info(layout.textgt("Scene01", "clone", "info"))
    boxes = bbox.merge(info[["trackID", "label"]], on="trackID")
    assert (boxes.number_pixels == 0).any()
    assert (((boxes.right - boxes.left) == 5) & ((boxes.bottom - boxes.top) == 4)).any()
    same = boxes.groupby(["frame", "cameraID", "left", "right", "top", "bottom"])["label"].nunique()
    assert (same > 1).any()
    _, dropped = dedupe(boxes)
    assert {"other_camera", "hidden", "sliver", "class_conflict"} <= set(dropped["reason"])


def test_real_side_is_kitti_format_and_degraded(world):
    root = world / "kitti"
    ids = kitti.list_training_ids(root)
    assert ids == ["000000", "000001", "000002", "000003"]
    labels = [kitti.read_label(kitti.training_paths(root, i)["label"]) for i in ids]
    assert all(set(df["type"]) <= {"Car", "Van", "Truck", "DontCare"} for df in labels)
    calib = kitti.read_calib(kitti.training_paths(root, "000000")["calib"])
    assert calib["P2"].shape == (3, 4) and calib["R0_rect"].shape == (3, 3)
    assert kitti.training_paths(root, "000000")["semantic"].is_file()
    assert not kitti.training_paths(root, "000001")["semantic"].is_file()
    img = read_rgb(kitti.training_paths(root, "000000")["image"])
    sim = read_rgb(world / "vkitti2/vkitti_2.0.3_rgb/Scene01/clone/frames/rgb/Camera_0/rgb_00000.jpg")
    import cv2
    sharp = lambda a: cv2.Laplacian(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
    assert sharp(img) < sharp(sim)  # the real side is softer


def test_ingest_index(world):
    layout = vkitti2.Layout.from_root(world / "vkitti2")
    frames, boxes = index_vkitti2_sequence(layout, "Scene01", "clone", 0, frame_stride=2)
    assert frames["frame"].tolist() == [0, 2]
    assert frames["frame_id"].tolist() == ["Scene01_clone_c0_00000", "Scene01_clone_c0_00002"]
    assert set(boxes["frame"]) == {0, 2} and set(boxes["cameraID"]) == {0, 1}
    assert (frames[["width", "height"]].to_numpy() == [1242, 375]).all()
    real, real_boxes = index_kitti(world / "kitti", 0.5, 0)
    assert sorted(real["split"]) == ["train", "train", "val", "val"]
    assert len(set(real[real.split == "train"].image_id) & set(real[real.split == "val"].image_id)) == 0
    assert sum(len(b) for b in real_boxes) > 0


@pytest.fixture
def broken(world, tmp_path) -> Path:
    shutil.copytree(world / "vkitti2", tmp_path / "vkitti2")
    return tmp_path / "vkitti2"


def test_ingest_box_outside_image_names_file_and_line(broken):
    layout = vkitti2.Layout.from_root(broken)
    p = layout.textgt("Scene01", "clone", "bbox")
    lines = p.read_text().splitlines()
    i = next(k for k, line in enumerate(lines[1:], start=1) if line.split()[1] == "0")
    f = lines[i].split(); f[4] = "1300"; lines[i] = " ".join(f)
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"bbox.txt:{i + 1}: box .*outside the 1242x375 image"):
        index_vkitti2_sequence(layout, "Scene01", "clone", 0)


def test_ingest_unknown_track_and_missing_modality(broken):
    layout = vkitti2.Layout.from_root(broken)
    info = layout.textgt("Scene01", "clone", "info")
    info.write_text("\n".join(info.read_text().splitlines()[:2]) + "\n")
    with pytest.raises(DataError, match=r"trackID \d+ is not listed in .*info.txt"):
        index_vkitti2_sequence(layout, "Scene01", "clone", 0)
    os.remove(layout.frame_path("depth", "Scene01", "fog", 0, 1))
    with pytest.raises(DataError, match=r"depth_00001.png: missing depth file for frame 1"):
        index_vkitti2_sequence(layout, "Scene01", "fog", 0)


def test_ingest_unreadable_rgb(broken):
    layout = vkitti2.Layout.from_root(broken)
    layout.frame_path("rgb", "Scene01", "clone", 0, 1).write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match=r"rgb_00001.jpg: unreadable image"):
        index_vkitti2_sequence(layout, "Scene01", "clone", 0)


def test_traffic_params_and_scene_names():
    from sim2real.demo.world import Traffic, make_scene, scene_name
    from sim2real.rng import keyed_rng
    from sim2real.errors import ConfigError

    names = [scene_name(i) for i in range(8)]
    assert names[:5] == list(vkitti2.SCENES) and len(set(names)) == 8 and names[5] == "Scene21"
    t = Traffic.from_params({"vehicles": [8, 14], "near_m": [5, 40], "near_share": 1.0, "class_weights": [1, 0, 0]})
    spec = make_scene(keyed_rng(0, "t"), 1, n_vehicles=12, hidden_pair=False, traffic=t)
    assert {v.label for v in spec.vehicles} == {"Car"} and all(5 <= v.z_m <= 40 for v in spec.vehicles)
    with pytest.raises(ConfigError, match="demo.traffic.nope"):
        Traffic.from_params({"nope": 1})
    with pytest.raises(ConfigError, match="demo.traffic out of range"):
        Traffic.from_params({"vehicles": [5, 5]})
