"""The calibrate library: it recovers the demo world's hidden camera (two different settings, so a
fit that returns constants fails), reads only the real train split, and its statistics behave."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from sim2real.calibrate import RECOVERY_TOLERANCE, recovery
from sim2real.calibrate.data import read_real_frames, subsample
from sim2real.calibrate.fit import RealFrame, Settings, SimFrame, calibrate
from sim2real.calibrate.stats import box_blur_px, estimate_jpeg_quality, fit_poisson_gaussian, flat_patch_noise
from sim2real.demo.realism import DEFAULTS, make_real, physics_equivalent
from sim2real.demo.render import Camera, ray_length_m, render
from sim2real.demo.world import KITTI_P2, VK_CAMERA, make_scene
from sim2real.rng import keyed_rng
from sim2real.formats.images import encode_jpeg_roundtrip, write_image
from sim2real.physics.camera import sensor_noise_u8
from tests.conftest import ROOT

TOLERANCE = {k: v for k, v in RECOVERY_TOLERANCE.items() if v is not None}


def _boxes(objects, cam: Camera, min_height_px: float = 0.0):
    out, ids, z = [], [], []
    for ob in objects:
        u0, v0, u1, v1 = ob["proj"]
        l, t, r, b = max(u0, 0), max(v0, 0), min(u1, cam.width - 1), min(v1, cam.height - 1)
        if r - l < 2 or b - t < max(min_height_px, 2) or ob["visible_px"] == 0:
            continue
        out.append([l, t, r, b]); ids.append(ob["track_id"]); z.append((ob["lo"][2] + ob["hi"][2]) / 2)
    return np.array(out, np.float64).reshape(-1, 4), np.array(ids, np.int64), np.array(z)


def small_world(real_camera: dict, n_sim: int = 24, n_real: int = 20, seed: int = 3):
    """In-memory miniature world: clean synthetic frames (2 scenes) and "real" frames degraded by
    sim2real.demo.realism with ``real_camera`` (the hidden camera)."""
    from sim2real.calibrate.stats import box_distance_m
    sim = []
    cam = Camera(**VK_CAMERA)
    for scene in range(2):
        spec = make_scene(keyed_rng(seed, "scene", scene), n_sim // 2, texture_seed=scene + 1)
        for f in range(n_sim // 2):
            fr = render(spec, cam, f)
            xyxy, ids, _ = _boxes(fr.objects, cam)
            sim.append(SimFrame(f"s{scene}_{f}", encode_jpeg_roundtrip(fr.rgb, 95), fr.depth_m, fr.instance,
                                (cam.fx, cam.fy, cam.cx, cam.cy), xyxy, box_distance_m(fr.depth_m, fr.instance, ids, xyxy)))
    opts = dict(real_camera)
    palette = opts.pop("palette")
    real = []
    kcam = Camera(**KITTI_P2, width=1242, height=375, height_m=1.73)
    for i in range(n_real):
        rng = keyed_rng(seed, "kitti", i)
        spec = make_scene(rng, 1, n_vehicles=int(rng.integers(6, 12)), texture_seed=1000 + i, hidden_pair=False)
        spec.palette_shift = tuple(palette)
        fr = render(spec, kcam, 0)
        img = make_real(fr.rgb, fr.depth_m, ray_length_m(fr.depth_m, kcam), rng, **opts)
        xyxy, _, z = _boxes(fr.objects, kcam, min_height_px=18)  # KITTI: shorter boxes are DontCare
        real.append(RealFrame(str(i), img, xyxy, z, (kcam.fx, kcam.fy, kcam.cx, kcam.cy)))
    return sim, real


HAND_SET = yaml.safe_load((ROOT / "params.yaml").read_text())
SETTINGS = [
    dict(DEFAULTS),  # the demo world's own camera
    {"softness_far_m": 200.0, "visibility_m": 1000.0, "noise_sigma": 1.3, "jpeg_quality": 88, "contrast": 0.95,
     "gains": (0.93, 1.0, 1.07), "airlight": (200.0, 200.0, 200.0), "palette": (1.0, 1.0, 1.04)},
]


CASES = [pytest.param(i, k, id=f"{name}-{k}", marks=pytest.mark.slow)
         for i, name in enumerate(("demo_camera", "cool_clear_camera")) for k in TOLERANCE]


@pytest.fixture(scope="module")
def recovered() -> dict:
    """One calibration per hidden setting (about a minute each on 2 idle cores), from the hand-set params."""
    params = {k: HAND_SET[k] for k in ("blur", "haze", "camera")}
    out = {}
    for i, cam in enumerate(SETTINGS):
        sim, real = small_world(cam)
        result = calibrate(sim, real, params, Settings(seed=0))
        out[i] = (recovery(result["params"], params, physics_equivalent(cam)), result["params"])
    return out


@pytest.mark.parametrize("setting, key", CASES)
def test_calibrate_recovers_the_hidden_camera(recovered, setting, key):
    table, fitted = recovered[setting]
    assert table[key]["rel_error"] <= TOLERANCE[key], table[key]
    assert fitted["camera"]["jpeg_quality"] == pytest.approx(SETTINGS[setting]["jpeg_quality"], abs=3)


@pytest.mark.slow
@pytest.mark.parametrize("setting", [0, 1], ids=["demo_camera", "cool_clear_camera"])
def test_calibrate_derives_the_hidden_airlight(recovered, setting):
    """The airlight follows from the real frames through the fitted camera: the hidden one over the
    real world's palette (the white-balance gains absorb the palette, the sky does not carry it)."""
    _, fitted = recovered[setting]
    cam = SETTINGS[setting]
    expected = np.asarray(cam["airlight"], float) / np.asarray(cam["palette"], float)
    np.testing.assert_allclose(fitted["haze"]["airlight"], expected, rtol=0.05)


def test_two_settings_differ_beyond_the_tolerances():
    a, b = (physics_equivalent(c) for c in SETTINGS)
    for k, tol in TOLERANCE.items():  # the tolerance bands do not overlap: one constant cannot pass both
        lo, hi = sorted((a[k], b[k]))
        assert lo * (1 + tol) < hi * (1 - tol), k


def test_reads_only_the_real_train_split(tmp_path):
    rows, boxes = [], []
    for i in range(6):
        split = "train" if i % 2 else "val"
        img = tmp_path / f"{i:06d}.png"
        if split == "train":  # val images do not even exist: opening one would fail
            write_image(img, np.full((40, 60, 3), 100, np.uint8))
        rows.append({"image_id": f"{i:06d}", "split": split, "image": str(img), "label": "", "calib": "",
                     "semantic": "", "width": 60, "height": 40})
        boxes.append({"image_id": f"{i:06d}", "type": "Car", "left": 5, "top": 5, "right": 30, "bottom": 30, "z": 12.0})
    pd.DataFrame(rows).to_csv(tmp_path / "real_frames.csv", index=False)
    pd.DataFrame(boxes).to_csv(tmp_path / "real_boxes.csv", index=False)
    got = read_real_frames(tmp_path / "real_frames.csv", tmp_path / "real_boxes.csv", ["Car"], None, 0, roots=[tmp_path])
    assert [r.image_id for r in got] == ["000001", "000003", "000005"]
    assert all(len(r.boxes) == 1 and r.distance_m[0] == 12.0 for r in got)
    assert len(read_real_frames(tmp_path / "real_frames.csv", tmp_path / "real_boxes.csv", ["Car"], 2, 0,
                                roots=[tmp_path])) == 2


def test_subsample_is_seeded_sorted_and_bounded():
    ids = [f"f{i:03d}" for i in range(50)]
    a, b = subsample(ids, 10, 0), subsample(ids, 10, 0)
    assert a == b == sorted(a) and len(a) == 10 and subsample(ids, 10, 1) != a and subsample(ids, None, 0) == ids


def test_poisson_gaussian_fit_on_flat_patches():
    img = np.zeros((256, 512, 3), np.uint8)
    for k in range(8):  # flat strips at 8 levels
        img[:, k * 64:(k + 1) * 64] = 20 + 28 * k
    noisy = sensor_noise_u8(img, np.random.default_rng(0), shot_gain=0.05, read_sigma=1.5)
    fit = fit_poisson_gaussian(*flat_patch_noise(noisy))
    assert fit.shot == pytest.approx(0.05, rel=0.35) and fit.read_sigma == pytest.approx(1.5, rel=0.2)
    clean = fit_poisson_gaussian(*flat_patch_noise(img))
    assert clean.read_sigma < 0.1 and clean.shot < 1e-3


def test_jpeg_quality_estimate_and_box_blur_monotone():
    import cv2
    cam = Camera(**VK_CAMERA)
    fr = render(make_scene(keyed_rng(0, "scene", 0), 1, texture_seed=1), cam, 0)
    noisy = sensor_noise_u8(fr.rgb, np.random.default_rng(1), 0.0, 2.0)
    for q in (60, 80):
        assert estimate_jpeg_quality([encode_jpeg_roundtrip(noisy, q)]) == pytest.approx(q, abs=2)
    assert estimate_jpeg_quality([noisy]) is None  # never compressed
    xyxy, _, _ = _boxes(fr.objects, cam, min_height_px=30)
    sig = [float(np.nanmedian(box_blur_px(cv2.GaussianBlur(fr.rgb, (0, 0), s) if s else fr.rgb, xyxy)))
           for s in (0, 1, 2, 3)]
    assert all(math.isfinite(x) for x in sig) and sig == sorted(sig) and sig[3] > sig[0] + 1.5


def test_central_boxes_keep_the_centre_and_scale_the_sides():
    from sim2real.calibrate.stats import central_boxes
    got = central_boxes([[10, 20, 30, 60], [0, 0, 10, 10]], 0.5)
    np.testing.assert_allclose(got, [[15, 30, 25, 50], [2.5, 2.5, 7.5, 7.5]])
    np.testing.assert_allclose(central_boxes([[1, 2, 3, 4]], 1.0), [[1, 2, 3, 4]])
    with pytest.raises(ValueError, match="inner"):
        central_boxes([[0, 0, 1, 1]], 0.0)


def test_invert_colour_round_trips_through_the_table():
    from sim2real.physics.colour import colour_u8, invert_colour
    cam = ((1.2, 1.0, 0.7), 0.3, 1.1, 0.9)
    for level in ([200.0, 210.0, 225.0], [60.0, 128.0, 90.0]):
        back = invert_colour(colour_u8(np.array([[level]], np.uint8), *cam)[0, 0], *cam)
        np.testing.assert_allclose(back, level, atol=1.0)  # the table's 8-bit steps
    # an output above what the table reaches maps to the top of its input range
    assert invert_colour([255, 255, 255], (0.5, 1.0, 1.0), -1.0)[0] == 255


def test_observed_airlight_reads_the_hazed_sky_through_the_camera():
    from sim2real.calibrate.stats import observed_airlight
    rng = np.random.default_rng(0)
    imgs = []
    for _ in range(3):
        img = rng.integers(20, 120, (120, 200, 3)).astype(np.uint8)  # textured scene
        img[:40] = (207, 200, 184)  # the sky: the airlight as the camera delivered it
        imgs.append(img)
    np.testing.assert_allclose(observed_airlight(imgs), [207, 200, 184], atol=1.0)


def test_tall_boxes_drop_short_boxes_with_their_distances():
    from sim2real.calibrate.fit import tall_boxes
    fr = RealFrame("0", np.zeros((50, 50, 3), np.uint8), np.array([[0, 0, 10, 30], [0, 0, 10, 10.0]]), np.array([5.0, 60.0]))
    got = tall_boxes(fr, 18)
    assert got.boxes.tolist() == [[0, 0, 10, 30]] and got.distance_m.tolist() == [5.0] and len(fr.boxes) == 2


def test_lane_mask_is_the_lane_ahead_and_road_luminance_reads_it():
    from sim2real.calibrate.stats import lane_mask, road_luminance
    rows = np.array([np.nan, np.nan, 20.0, 10.0])  # two sky rows, then ground at 20 m and 10 m
    m = lane_mask((4, 200), rows, fx=500.0, cx=100.0, half_width_m=2.0)
    assert not m[:2].any()
    assert np.flatnonzero(m[2]).tolist() == list(range(50, 151))   # |u - cx| <= 500 * 2 / 20 = 50
    assert np.flatnonzero(m[3]).tolist() == list(range(0, 200))    # 100 px either side: the whole row
    exclude = np.zeros((4, 200), bool)
    exclude[2, 50:100] = True
    assert np.flatnonzero(lane_mask((4, 200), rows, 500.0, 100.0, exclude)[2]).tolist() == list(range(100, 151))
    gray = np.tile(np.arange(200, dtype=np.float32), (4, 1))
    lum = road_luminance(gray, rows, 500.0, 100.0, exclude)
    assert np.isnan(lum[:2]).all() and lum[2] == 125.0 and lum[3] == 99.5
