"""Fault injection for input data and params (issue 15 items 1-3, 12-16): each bad input is a
one-line DataError/ConfigError/StorageError naming the file (and line) or the params key, never
silently wrong data."""
from __future__ import annotations

import copy
import errno
import math
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from sim2real.demo import generate
from sim2real.cli import entrypoint
from sim2real.errors import ConfigError, DataError, StorageError
from sim2real.fingerprint import FingerprintCache
from sim2real.formats import kitti, vkitti2
from sim2real.formats.images import image_size, read_gray_any, read_rgb, write_image
from sim2real.io import write_json
from sim2real.manifest import index_kitti, index_vkitti2_sequence
from sim2real.params import RANDOM_RULES, SCHEMAS, load_params, validate_section
from sim2real.physics.blur import distance_blur
from sim2real.physics.frame import check_config, haze_enabled, sample_values
from tests.conftest import ROOT, dvc, make_repo

os.environ.setdefault("SIM2REAL_NO_PROGRESS", "1")
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
TINY = dict(seed=7, scenes=1, frames_per_scene=2, variations=["clone"], real_frames=2, real_seg_every=2)
RGB0 = "vkitti2/vkitti_2.0.3_rgb/Scene01/clone/frames/rgb/Camera_0/rgb_00000.jpg"
DEPTH0 = "vkitti2/vkitti_2.0.3_depth/Scene01/clone/frames/depth/Camera_0/depth_00000.png"
BBOX = "vkitti2/vkitti_2.0.3_textgt/Scene01/clone/bbox.txt"


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    world = tmp_path_factory.mktemp("tiny") / "world"
    generate(world, **TINY)
    return world


@pytest.fixture
def world(tiny_world, tmp_path) -> Path:
    """A private copy of the tiny world to break."""
    shutil.copytree(tiny_world, tmp_path / "world")
    return tmp_path / "world"


def index(world: Path, camera: int = 0, cache=None):
    return index_vkitti2_sequence(vkitti2.Layout.from_root(world / "vkitti2"), "Scene01", "clone", camera,
                                  fingerprints=cache)


# ----------------------------------------------------------------------------- 1. corrupt images
@pytest.mark.parametrize("keep", [700, 0.5, -2])
def test_truncated_jpeg_is_a_data_error_naming_the_file(world, keep):
    path = world / RGB0
    data = path.read_bytes()
    n = keep if isinstance(keep, int) and keep > 0 else (len(data) + keep if isinstance(keep, int) else int(len(data) * keep))
    path.write_bytes(data[:n])
    assert cv2.imread(str(path)) is not None  # OpenCV alone decodes it (grey where data is missing)
    for reader in (read_rgb, image_size):
        with pytest.raises(DataError, match=re.escape(str(path)) + r": unreadable image: truncated or corrupt JPEG"):
            reader(path)
    with pytest.raises(DataError, match=re.escape(str(path))):
        index(world)  # ingest checks every file's end marker


def test_truncated_and_corrupt_png_are_data_errors(world):
    path = world / DEPTH0
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=re.escape(str(path)) + r": unreadable image: truncated"):
        read_gray_any(path)
    with pytest.raises(DataError, match=re.escape(str(path))):
        index(world)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF  # inside the image data: the chunk's CRC no longer matches
    path.write_bytes(bytes(flipped))
    for reader in (read_gray_any, read_rgb):
        with pytest.raises(DataError, match=re.escape(str(path)) + r": unreadable image"):
            reader(path)


def test_whole_files_still_read_the_same(world):
    path = world / RGB0
    ref = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(read_rgb(path), ref)
    path.write_bytes(path.read_bytes() + b"\0" * 16)  # zero padding after the end marker is tolerated
    assert np.array_equal(read_rgb(path), ref)


def test_every_image_read_goes_through_the_strict_reader():
    """No module decodes image files except sim2real/formats/images.py (style, cyclegan, gap,
    depth_blur, ingest and report all call its readers)."""
    pattern = re.compile(r"cv2\.imread\(|cv2\.imdecode\(|Image\.open\(|imageio|skimage\.io\.imread|torchvision\.io\.read_image")
    offenders = []
    for folder in ("sim2real", "stages"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.relative_to(ROOT).as_posix() in ("sim2real/formats/images.py",):
                continue
            for i, line in enumerate(path.read_text().splitlines(), start=1):
                if pattern.search(line) and not line.lstrip().startswith("#"):
                    offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, offenders


# ----------------------------------------------------------------------------- 2. fingerprints
def test_changed_pixels_change_the_manifest_and_the_cache_is_used(world, tmp_path):
    with FingerprintCache(tmp_path / "fp.sqlite") as cache:
        before, _ = index(world, cache=cache)
        assert cache.misses == 8 and cache.hits == 0  # 2 frames x 4 files hashed once
    with FingerprintCache(tmp_path / "fp.sqlite") as cache:
        again, _ = index(world, cache=cache)
        assert cache.hits == 8 and cache.misses == 0  # unchanged files: stat only
    pd.testing.assert_frame_equal(before, again)
    path = world / RGB0
    img = read_rgb(path)
    img[100:110, 100:110] = 255 - img[100:110, 100:110]  # same size, other pixels
    st = path.stat()
    write_image(path, img)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime restored (cp -p, rsync -a)
    with FingerprintCache(tmp_path / "fp.sqlite") as cache:
        after, _ = index(world, cache=cache)
    changed = (after != before).any(axis=0)
    assert changed[changed].index.tolist() == ["rgb_xxh3"]
    assert (after["rgb_xxh3"] != before["rgb_xxh3"]).tolist() == [True, False]
    real, _ = index_kitti(world / "kitti", 0.5, 0)
    assert real["image_xxh3"].str.fullmatch(r"[0-9a-f]{16}").all()


@pytest.mark.slow
def test_external_pixels_changed_rerun_ingest_and_depth_blur(tiny_world, tmp_path):
    """data.source: vkitti2 on a copy outside the repo: after replacing one frame's pixels,
    `dvc repro -s -f ingest` changes the manifests, so `dvc repro depth_blur` reruns its chain."""
    ext = tmp_path / "ext"
    shutil.copytree(tiny_world, ext)
    demo = {"seed": 7, "scenes": 1, "frames_per_scene": 1, "variations": ["clone"], "real_frames": 2, "real_seg_every": 2}
    repo = make_repo(tmp_path / "repo", {"demo": demo, "compute": {"processes": 1, "torch_threads": 1},
                                          "data": {"source": "vkitti2", "vkitti2_root": str(ext / "vkitti2"),
                                                   "kitti_root": str(ext / "kitti"), "scenes": ["Scene01"]}})
    dvc(repo, "repro", "depth_blur")
    out_image = repo / "data/aug/depth_blur/images/Scene01_clone_c0_00000.jpg"
    first = out_image.read_bytes()
    img = read_rgb(ext / RGB0)
    write_image(ext / RGB0, np.ascontiguousarray(img[:, ::-1]))  # same size, mirrored pixels
    dvc(repo, "repro", "-s", "-f", "ingest")
    out = dvc(repo, "repro", "depth_blur").stdout
    assert "Running stage 'dedupe'" in out and "Running stage 'depth_blur'" in out, out
    assert out_image.read_bytes() != first


# ----------------------------------------------------------------------------- 3. (R) values
def test_infinite_visibility_means_no_haze_and_never_nan():
    params = {"blur": {"sigma": 2.0, "near_m": 5.0, "far_m": 70.0}, "haze": {"enabled": True, "visibility_m": math.inf},
              "camera": {"jpeg_quality": 90}}
    check_config(params)
    values = sample_values(params, 0, "Scene01_clone_c0_00000")
    assert values["haze_visibility_m"] == math.inf and not haze_enabled(params, values)
    assert not any(isinstance(v, float) and math.isnan(v) for v in values.values())
    assert validate_section("haze", {**PARAMS["haze"], "visibility_m": math.inf}).visibility_m == math.inf


@pytest.mark.parametrize("spec, match", [(math.inf, "must be finite"), ([1.0, math.inf], "must be finite"),
                                         (math.nan, "NaN"), ([math.nan, 2.0], "NaN"), (1e6, "must be <= 100")])  # "blur.sigma must be <= 100" in check_config
def test_blur_sigma_inf_nan_and_huge_are_config_errors(spec, match):
    with pytest.raises(ConfigError, match=r"blur\.sigma:? " + match):
        check_config({"blur": {"sigma": spec}})
    with pytest.raises(ConfigError, match=r"params.yaml: blur\.sigma: " + match):
        validate_section("blur", {**PARAMS["blur"], "sigma": spec})


@pytest.mark.parametrize("key", sorted(RANDOM_RULES))
def test_every_random_key_rejects_nan_and_open_ended_ranges(key):
    section, name = key.split(".")
    for spec in (math.nan, [0.5, math.nan], [1.0, math.inf]):
        with pytest.raises(ConfigError, match=re.escape(key)):
            check_config({section: {name: spec}})
        with pytest.raises(ConfigError, match=re.escape(key)):
            validate_section(section, {**PARAMS[section], name: spec})


def test_huge_sigma_in_the_library_is_a_config_error():
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ConfigError, match=r"blur\.sigma must be <= 100"):
        distance_blur(img, np.full((8, 8), 50.0, np.float32), 1e6, 5.0, 70.0)


# ----------------------------------------------------------------------------- 12. params validated on load
BAD_PARAMS = [
    ("data", "max_frames", 0, "data.max_frames"),
    ("data", "max_frames", -1, "data.max_frames"),
    ("data", "frame_stride", 0, "data.frame_stride"),
    ("data", "real_val_fraction", 1.5, "data.real_val_fraction"),
    ("data", "scenes", ["Scene01", "Scene01"], r"data.scenes: name 'Scene01' listed twice"),
    ("data", "camera", 2, "data.camera"),
    ("data", "camera", True, "data.camera: input should be a valid integer"),  # strict types: no bool as 1
    ("data", "on_error", "ignore", "data.on_error"),
    ("data", "typo_key", 1, r"data.typo_key: unknown key"),
    ("classes", None, None, "classes"),
    ("classes", None, [], "classes"),
    ("classes", None, ["Car", "Car"], r"classes: class 'Car' listed twice"),
    ("dedupe", "merge_iou", 1.5, "dedupe.merge_iou"),
    ("dedupe", "min_visible_px", -1, "dedupe.min_visible_px"),
    ("blur", "max_layers", 100, "blur.max_layers"),
    ("blur", "near_m", [60, 90], "blur.near_m"),
    ("haze", "airlight", "grey", "haze.airlight"),
    ("camera", "jpeg_quality", 101, "camera.jpeg_quality"),
    ("demo", "scenes", 0, "demo.scenes"),
]


@pytest.mark.parametrize("section, key, value, match", BAD_PARAMS)
def test_bad_params_are_config_errors_naming_the_key(tmp_path, section, key, value, match):
    params = copy.deepcopy(PARAMS)
    if key is None:
        params[section] = value
    else:
        params[section][key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=r"^" + re.escape(str(tmp_path / "params.yaml")) + ": " + match) as err:
        load_params(section, path=tmp_path / "params.yaml")
    assert "\n" not in str(err.value)


def test_missing_key_is_named_and_shipped_params_validate(tmp_path):
    params = copy.deepcopy(PARAMS)
    del params["blur"]["step_px"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=r"missing key 'blur.step_px'"):
        load_params("blur", path=tmp_path / "params.yaml")
    p = load_params(*SCHEMAS, path=ROOT / "params.yaml")  # every schema accepts the shipped params
    assert p.blur.sigma == PARAMS["blur"]["sigma"] and dict(p.dedupe) == PARAMS["dedupe"]
    assert p.data.get("camera") == 0 and list(p.classes) == PARAMS["classes"]


# ----------------------------------------------------------------------------- 13. line numbers
def test_line_numbers_count_blank_lines(world):
    bbox = world / BBOX
    lines = bbox.read_text().splitlines()
    # two blank lines after the header: the 3rd data row is now on line 6, not 4
    text = "\n".join([lines[0], "", "", *lines[1:]]) + "\n"
    bbox.write_text(text)
    _, boxes = index(world)
    file_lines = bbox.read_text().split("\n")
    for row in boxes.itertuples():  # boxes.csv's `line` is the line in bbox.txt
        fields = file_lines[row.line - 1].split()
        assert (int(fields[0]), int(fields[1]), int(fields[2])) == (row.frame, row.cameraID, row.trackID)
    rows = text.split("\n")
    f = rows[5].split()
    f[3], f[4] = "1300", "1400"  # left/right outside the 1242 px image, on line 6
    rows[5] = " ".join(f)
    bbox.write_text("\n".join(rows))
    with pytest.raises(DataError, match=re.escape(f"{bbox}:6: box")):
        index(world)


def test_kitti_label_line_numbers_count_blank_lines(world):
    label = world / "kitti/training/label_2/000000.txt"
    body = label.read_text().splitlines()
    assert len(body) >= 1
    label.write_text("\n\n" + "\n".join(body) + "\nCar 0 0 0 10 20 5000 40 1 1 1 1 1 1 0\n")
    with pytest.raises(DataError, match=re.escape(f"{label}:{len(body) + 3}: box")):
        list(index_kitti(world / "kitti", 0.5, 0)[1])
    label.write_text("\n\n" + "\n".join(body) + "\nBus 0 0 0 10 20 30 40 1 1 1 1 1 1 0\n")
    with pytest.raises(DataError, match=re.escape(f"{label}:{len(body) + 3}: unknown object type")):
        kitti.read_label(label)


# ----------------------------------------------------------------------------- 14. empty first KITTI label
def test_empty_first_kitti_label_keeps_the_real_boxes_header(world, monkeypatch):
    (world / "kitti/training/label_2/000000.txt").write_text("")
    assert list(kitti.read_label(world / "kitti/training/label_2/000000.txt").columns) == kitti.LABEL_COLUMNS
    repo = world.parent / "repo"
    (repo / "data").mkdir(parents=True)
    shutil.move(str(world), repo / "data" / "demo")
    params = copy.deepcopy(PARAMS)
    params["data"].update(scenes=["Scene01"], variations=["clone"])
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(repo)
    from stages import ingest
    ingest.main(["--out", "data/ingest"])
    text = (repo / "data/ingest/real_boxes.csv").read_text().splitlines()
    assert text[0].split(",") == ["image_id", *kitti.LABEL_COLUMNS]  # 16 fields, no `score`
    assert {len(line.split(",")) for line in text} == {16}


# ----------------------------------------------------------------------------- 15. both cameras checked
def test_box_outside_the_image_on_camera_1_fails_ingest(world):
    bbox = world / BBOX
    lines = bbox.read_text().splitlines()
    i = next(i for i, line in enumerate(lines[1:], start=1) if line.split()[1] == "1")
    f = lines[i].split()
    f[4] = "1250"  # right edge beyond x = 1241
    lines[i] = " ".join(f)
    bbox.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=re.escape(f"{bbox}:{i + 1}: box") + r".*outside the 1242x375 image"):
        index(world, camera=0)


# ----------------------------------------------------------------------------- 16. messages that say what is wrong
def test_bom_is_named(world):
    bbox = world / BBOX
    bbox.write_bytes(b"\xef\xbb\xbf" + bbox.read_bytes())
    with pytest.raises(DataError, match=re.escape(f"{bbox}:1: ") + r".*UTF-8 byte-order mark"):
        index(world)


def test_disk_full_names_the_file(tmp_path):
    full = tmp_path / "out.jpg"
    full.symlink_to("/dev/full")  # every write to /dev/full fails with ENOSPC
    with pytest.raises(StorageError, match=re.escape(f"{full}: cannot write: no space left on device (ENOSPC)")) as err:
        write_image(full, np.zeros((8, 8, 3), np.uint8))
    assert err.value.errno == errno.ENOSPC


def test_read_only_folder_is_named(tmp_path, monkeypatch, capsys):
    """A read-only file system (EROFS; permission bits cannot show it when tests run as root):
    the image writer and a stage entry point say so in one line with the path."""
    import builtins

    real_open = builtins.open

    def read_only_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and str(file).startswith(str(tmp_path)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only_open)
    with pytest.raises(StorageError, match=re.escape(f"{tmp_path / 'x.png'}: cannot write: read-only file system (EROFS)")):
        write_image(tmp_path / "x.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SystemExit) as exit_:
        entrypoint(lambda: write_json(tmp_path / "r.json", {}))
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert re.fullmatch(re.escape(f"error: {tmp_path}/") + r"\.r\.json\.tmp-\d+(\.json)?: read-only file system \(EROFS\)",
                        err.strip()), err


def test_depth_map_of_the_wrong_size_names_the_file(world):
    path = world / DEPTH0
    depth = vkitti2.read_depth_m(path)
    vkitti2.write_depth(path, depth[:, :-2])
    with pytest.raises(DataError, match=re.escape(str(path)) + r": depth map is 1240x375, the frame's RGB image .*rgb_00000.jpg is 1242x375"):
        index(world)


def test_write_json_still_writes(tmp_path):
    write_json(tmp_path / "a.json", {"x": 1})
    assert (tmp_path / "a.json").read_text() == '{\n  "x": 1\n}\n'
