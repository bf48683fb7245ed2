"""Property tests for sim2real.physics on small synthetic arrays (no files, no DVC)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from sim2real.errors import ConfigError, DataError
from sim2real.physics import (blur_targets, coc_sigma_px, defocus, distance_blur, haze, jpeg_recompress,
                              motion_blur, object_transmission, ray_length_m, render, sample_values,
                              sensor_noise, transmission, vignetting)
from sim2real.physics.frame import VALUE_COLUMNS


def texture(h=96, w=160, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def lap_var(img: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64), cv2.CV_64F).var())


# ------------------------------------------------------------------------- identity at zero strength
def test_zero_strength_is_identity_bit_exact():
    img = texture()
    depth = np.linspace(1, 200, img.shape[1], dtype=np.float32)[None, :].repeat(img.shape[0], 0)
    depth[:10] = np.inf
    out = distance_blur(img, depth, 0.0, 5.0, 70.0)
    assert out.dtype == np.uint8 and np.array_equal(out, img) and out is not img
    assert np.array_equal(haze(img, depth, math.inf), img)
    rng = np.random.default_rng(0)
    assert np.array_equal(sensor_noise(img, rng, 0.0, 0.0), img)
    assert np.array_equal(vignetting(img, 0.0), img)
    assert np.array_equal(motion_blur(img, depth, 0.0, 0.01), img)
    assert np.array_equal(jpeg_recompress(img, None), img)


def test_render_with_everything_off_is_identity():
    img, depth = texture(), np.full((96, 160), 50.0, np.float32)
    params = {"blur": {"sigma": 0.0, "near_m": 5, "far_m": 70}, "haze": {"visibility_m": None},
              "camera": {"shot_gain": 0, "read_sigma": 0, "vignetting": 0, "ego_speed_mps": 0}}
    out, t, _ = render(img, depth, None, None, params, sample_values(params, 0, "f"))
    assert t is None and np.array_equal(out, img)


# ------------------------------------------------------------------------- distance blur
def test_blur_grows_monotonically_with_depth_on_a_ramp():
    h, w = 64, 640
    img = texture(h, w, seed=1)
    bands = np.linspace(5.0, 80.0, 8)
    depth = np.repeat(bands, w // len(bands))[None, :].repeat(h, 0).astype(np.float32)
    out = distance_blur(img, depth, 3.0, 5.0, 70.0)
    bw = w // len(bands)
    sharp = [lap_var(out[:, i * bw + 8:(i + 1) * bw - 8]) for i in range(len(bands))]
    assert sharp[0] == pytest.approx(lap_var(img[:, 8:bw - 8]))  # at near_m: untouched
    for a, b, za, zb in zip(sharp, sharp[1:], bands, bands[1:]):
        if zb <= 70.0:
            assert b < a, f"variance of Laplacian did not fall from {za:.0f} m to {zb:.0f} m"
    assert sharp[-1] == pytest.approx(sharp[-2], rel=0.2)  # saturates beyond far_m (same sigma)


def test_sigma_curve_shapes():
    from sim2real.physics import distance_sigma_px
    d = np.array([[0.0, 5.0, 37.5, 70.0, 200.0, np.inf]], np.float32)
    lin = distance_sigma_px(d, 2.0, 5.0, 70.0)
    assert np.allclose(lin, [[0, 0, 1.0, 2.0, 2.0, 2.0]])
    pw = distance_sigma_px(d, 2.0, 5.0, 70.0, curve="power", power=2.0)
    assert pw[0, 2] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="far_m"):
        distance_sigma_px(d, 2.0, 70.0, 5.0)


def _edge_scene(h=80, w=160):
    """Far blue background at 100 m, a near red square at 3 m."""
    img = np.zeros((h, w, 3), np.uint8)
    img[...] = (0, 0, 255)
    depth = np.full((h, w), 100.0, np.float32)
    img[20:60, 40:100] = (255, 0, 0)
    depth[20:60, 40:100] = 3.0
    return img, depth


def test_occlusion_near_edge_stays_sharp_and_background_does_not_bleed():
    img, depth = _edge_scene()
    out = distance_blur(img, depth, 4.0, 5.0, 70.0)
    row = out[40, :, 0].astype(int)  # red channel across the left and right edges
    # the near object is untouched, and no red leaks more than 1 px into the background
    assert np.array_equal(out[20:60, 40:100], img[20:60, 40:100])
    assert (row[:39] <= 2).all() and (row[101:] <= 2).all()
    # the naive per-pixel blend of blurred copies (what this design avoids) bleeds ~3 sigma
    naive = np.where((depth > 5)[..., None], cv2.GaussianBlur(img, (0, 0), 4.0), img)
    assert naive[40, 30:39, 0].max() > 50


def test_occlusion_blurred_near_object_over_sharp_far_background():
    """Defocus focused far: the near object blurs over the background (partial occlusion), but
    the sharp far background keeps its exact values beyond the near object's blur radius."""
    img, depth = _edge_scene()
    out = defocus(img, depth, focal_length_mm=50.0, f_number=1.4, focus_m=100.0, fx_px=725.0, max_sigma_px=3.0)
    assert np.array_equal(out[:, :25], img[:, :25])  # > 3 sigma from the object: untouched
    assert out[40, 45:95, 0].min() > 200  # object interior keeps its colour
    assert 0 < out[40, 38, 0] < 255  # its blurred edge spreads over what lies behind


def _layered_float_reference(img, depth, smap, step_px=0.5):
    """The same layered algorithm in float64 (no 8-bit rounding), for the precision test."""
    from sim2real.physics.layered import MIN_COVER, _far_to_near, kernel_size, quantise
    levels, step = quantise(smap, step_px, 16)
    key = levels * np.uint8(2)
    rgba = np.concatenate([img.astype(np.float64), np.ones(img.shape[:2] + (1,))], axis=2)
    acc = np.zeros_like(rgba)
    for k in _far_to_near(key, depth):
        m = (key == k)[..., None]
        sigma = (k // 2) * step
        layer = rgba * m
        if sigma > 0:
            ks = kernel_size(sigma)
            layer = cv2.GaussianBlur(layer, (ks, ks), sigma, borderType=cv2.BORDER_REFLECT_101)
        acc = layer + acc * (1 - layer[..., 3:])
    out = acc[..., :3] / np.maximum(acc[..., 3:], 1e-12)
    low = acc[..., 3] * 255 < MIN_COVER
    out[low] = img[low]
    return out


def test_8bit_layered_blur_is_close_to_float_reference():
    h, w = 90, 200
    rng = np.random.default_rng(11)
    img = cv2.resize(rng.integers(0, 256, (h // 5, w // 5, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    depth = np.linspace(2, 120, h, dtype=np.float32)[:, None].repeat(w, 1)
    depth[:20] = np.inf
    depth[40:80, 30:70] = 4.0  # a near object
    depth[25:35, 150:160] = 300.0
    smap = __import__("sim2real.physics", fromlist=["x"]).distance_sigma_px(depth, 3.0, 5.0, 70.0)
    from sim2real.physics.layered import layered_blur
    diff = np.abs(layered_blur(img, depth, smap).astype(float) - _layered_float_reference(img, depth, smap))
    assert diff.max() <= 4.0 and diff.mean() < 0.5  # measured: max ~3.5, mean ~0.36


def test_isolated_far_pixel_under_wide_kernel_keeps_its_colour():
    img = np.full((41, 41, 3), 40, np.uint8)
    img[20, 20] = (250, 10, 120)
    depth = np.full((41, 41), 1.0, np.float32)
    depth[20, 20] = 1000.0  # alone in its layer, sigma 8: its 8-bit coverage rounds to ~0
    out = distance_blur(img, depth, 8.0, 5.0, 70.0)
    assert np.array_equal(out[20, 20], img[20, 20]) and np.array_equal(np.delete(out.reshape(-1, 3), 20 * 41 + 20, 0),
                                                                       np.delete(img.reshape(-1, 3), 20 * 41 + 20, 0))


def test_coc_matches_thin_lens_formula():
    d = np.array([[5.0, 15.0, 60.0, np.inf]], np.float32)
    f, n, df, fx = 0.004, 2.0, 15.0, 725.0
    sig = coc_sigma_px(d, 4.0, n, df, fx)
    expected = [fx * (f / n) * abs(z - df) / z / (df - f) / 2 for z in (5.0, 15.0, 60.0)]
    assert np.allclose(sig[0, :3], expected, rtol=1e-5)
    assert sig[0, 1] == 0 and sig[0, 3] == pytest.approx(fx * (f / n) / (df - f) / 2, rel=1e-5)
    assert sig.max() < 1.0  # KITTI's 4 mm f/2 lens: sub-pixel defocus (why it is an ablation)


def test_objects_mode_leaves_background_untouched():
    img = texture()
    depth = np.full(img.shape[:2], 60.0, np.float32)
    inst = np.zeros(img.shape[:2], np.int32)
    inst[30:70, 50:120] = 4  # trackID 3
    blurred = distance_blur(img, depth, 3.0, 5.0, 70.0)
    out = blur_targets(img, blurred, inst, "objects", feather_px=2)
    bg = inst == 0
    assert np.array_equal(out[bg], img[bg])
    assert np.array_equal(out[35:65, 55:115], blurred[35:65, 55:115])  # beyond the feather: fully blurred
    back = blur_targets(img, blurred, inst, "background", feather_px=2)
    assert np.array_equal(back[35:65, 55:115], img[35:65, 55:115])
    params = {"blur": {"sigma": 3.0, "near_m": 5, "far_m": 70, "targets": "objects"}, "haze": {"enabled": False},
              "camera": {}}
    out2, _, _ = render(img, depth, inst, None, params, sample_values(params, 0, "x"))
    assert np.array_equal(out2[bg], img[bg]) and not np.array_equal(out2[~bg], img[~bg])


# ------------------------------------------------------------------------- haze
def test_haze_matches_koschmieder_at_known_pixels():
    h, w = 60, 100
    img = texture(h, w, seed=3)
    depth = np.random.default_rng(4).uniform(2, 400, (h, w)).astype(np.float32)
    depth[0, :] = np.inf
    K = (700.0, 710.0, 49.5, 29.5)
    vis, a = 300.0, np.array([200.0, 205.0, 210.0])
    out = haze(img, depth, vis, airlight=a, intrinsics=K)
    beta = 3.912 / vis
    for v, u in [(5, 7), (30, 50), (59, 99), (12, 80), (45, 3)]:
        ell = depth[v, u] * math.sqrt(1 + ((u - K[2]) / K[0]) ** 2 + ((v - K[3]) / K[1]) ** 2)
        t = math.exp(-beta * ell)
        expected = img[v, u] * t + a * (1 - t)
        assert np.abs(out[v, u].astype(float) - expected).max() <= 1.0
    assert np.abs(out[0].astype(float) - a).max() <= 0.5  # sky: t = 0, pure airlight
    mor = haze(img, depth, vis, airlight=a, contrast_threshold=0.05)
    t_mor = math.exp(-2.996 / vis * depth[30, 50])
    assert np.abs(mor[30, 50] - (img[30, 50] * t_mor + a * (1 - t_mor))).max() <= 1.0


def test_transmission_ray_length_and_sky():
    depth = np.full((9, 11), 100.0, np.float32)
    depth[0, 0] = np.inf
    ell = ray_length_m(depth, (10.0, 10.0, 5.0, 4.0))
    assert ell[4, 5] == pytest.approx(100.0) and ell[8, 10] > 100.0
    t = transmission(depth, 391.2)
    assert t[0, 0] == 0.0 and t[1, 1] == pytest.approx(math.exp(-1.0), rel=1e-5)
    assert (transmission(depth, math.inf) == 1).all()


def test_airlight_estimate_is_gray_at_horizon_sky_luma():
    from sim2real.physics import estimate_airlight
    img = np.zeros((100, 50, 3), np.uint8)
    img[:40] = (90, 160, 250)  # blue zenith
    img[40:50] = (200, 210, 220)  # pale horizon
    depth = np.full((100, 50), 20.0, np.float32)
    depth[:50] = np.inf
    a = estimate_airlight(img, depth)
    assert a[0] == a[1] == a[2] and a[0] == pytest.approx(0.299 * 200 + 0.587 * 210 + 0.114 * 220, abs=0.5)
    assert np.allclose(estimate_airlight(img, depth, neutral=False), (200, 210, 220))


def test_heterogeneous_fog_varies_and_is_reproducible():
    img = texture()
    depth = np.full(img.shape[:2], 150.0, np.float32)
    params = {"blur": {"sigma": 0}, "haze": {"visibility_m": 300, "heterogeneity": 0.6, "cell_px": 32,
                                           "airlight": 200}, "camera": {}}
    vals = sample_values(params, 0, "f")
    o1, t1, _ = render(img, depth, None, None, params, vals)
    o2, t2, _ = render(img, depth, None, None, params, vals)
    assert np.array_equal(o1, o2) and t1.std() > 0.02


# ------------------------------------------------------------------------- camera effects
def test_sensor_noise_follows_poisson_gaussian_variance():
    img = np.full((200, 200, 3), 100, np.uint8)
    out = sensor_noise(img, np.random.default_rng(0), shot_gain=0.5, read_sigma=2.0).astype(float)
    assert out.std() == pytest.approx(math.sqrt(0.5 * 100 + 4), rel=0.05)
    assert abs(out.mean() - 100) < 0.2
    again = sensor_noise(img, np.random.default_rng(0), shot_gain=0.5, read_sigma=2.0)
    assert np.array_equal(again, out.astype(np.uint8))


def test_vignetting_jpeg_and_motion_blur():
    img = np.full((60, 80, 3), 200, np.uint8)
    v = vignetting(img, 0.3)
    assert v[30, 40, 0] >= 199 and v[0, 0, 0] == round(200 * 0.7)
    tex = texture(60, 80)
    assert np.abs(jpeg_recompress(tex, 30).astype(int) - tex).mean() > np.abs(
        jpeg_recompress(tex, 95).astype(int) - tex).mean()
    big = texture(120, 400, seed=5)
    depth = np.full(big.shape[:2], 40.0, np.float32)
    depth[:, 200:] = 5.0  # near half: longer streaks (length ~ 1/depth)
    mb = motion_blur(big, depth, ego_speed_mps=20.0, exposure_s=0.02, intrinsics=(725, 725, 200, 60))
    loss_far = lap_var(mb[:, 20:180]) / lap_var(big[:, 20:180])
    loss_near = lap_var(mb[:, 220:380]) / lap_var(big[:, 220:380])
    assert loss_near < loss_far < 1.0


# ------------------------------------------------------------------------- randomisation
def test_sampling_is_seeded_by_frame_and_stable():
    params = {"blur": {"sigma": [1.0, 3.0], "near_m": 5, "far_m": 70}, "haze": {"visibility_m": [300, 900]},
              "camera": {"jpeg_quality": [70, 90], "read_sigma": 1.0}}
    a, b, c = sample_values(params, 0, "f1"), sample_values(params, 0, "f1"), sample_values(params, 0, "f2")
    assert a == b and a != c and set(VALUE_COLUMNS) <= set(a)
    assert 1.0 <= a["blur_sigma_px"] <= 3.0 and 300 <= a["haze_visibility_m"] <= 900
    assert isinstance(a["camera_jpeg_quality"], int) and 70 <= a["camera_jpeg_quality"] <= 90
    assert a["camera_read_sigma"] == 1.0 and a["camera_shot_gain"] is None
    assert sample_values(params, 1, "f1") != a
    fixed = {**params, "blur": {**params["blur"], "sigma": 2.0}}  # fixing one value leaves other draws alone
    assert sample_values(fixed, 0, "f1")["haze_visibility_m"] == a["haze_visibility_m"]


def test_same_values_same_bytes():
    img = texture(120, 200)
    depth = np.linspace(3, 150, 120, dtype=np.float32)[:, None].repeat(200, 1)
    params = {"blur": {"sigma": 2.0, "near_m": 5, "far_m": 70}, "haze": {"visibility_m": [300, 600]},
              "camera": {"shot_gain": 0.2, "read_sigma": [1, 2], "vignetting": 0.1}}
    v = sample_values(params, 7, "Scene01_clone_c0_00003")
    o1 = render(img, depth, None, (200, 200, 100, 60), params, v)[0]
    o2 = render(img, depth, None, (200, 200, 100, 60), params, dict(v))[0]
    assert o1.tobytes() == o2.tobytes()


def test_object_transmission_uses_instance_pixels_then_box():
    t = np.linspace(0, 1, 100, dtype=np.float32)[None, :].repeat(10, 0)
    inst = np.zeros((10, 100), np.int32)
    inst[:, 90:] = 6  # trackID 5, far right: high t
    boxes = np.array([[0, 0, 99, 9], [0, 0, 9, 9]])  # track 5's box spans all; track 9 has no pixels
    tr = object_transmission(t, inst, [5, 9], boxes)
    assert tr[0] == pytest.approx(t[0, 90:].mean()) and tr[1] == pytest.approx(t[:, :10].mean())


# ------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_errors_naming_the_frame():
    img = texture(40, 60)
    with pytest.raises(DataError, match="frame F7.*does not match"):
        distance_blur(img, np.ones((40, 61), np.float32), 2, 5, 70, name="F7")
    with pytest.raises(DataError, match="frame F7.*8-bit"):
        distance_blur(img, np.ones((40, 60), np.uint8), 2, 5, 70, name="F7")
    nan = np.ones((40, 60), np.float32)
    nan[3, 4] = np.nan
    with pytest.raises(DataError, match="frame F7.*NaN"):
        haze(img, nan, 300, name="F7")
    with pytest.raises(ConfigError, match="frame F7.*visibility_m must be > 0"):
        haze(img, np.ones((40, 60), np.float32), -5, name="F7")
    with pytest.raises(DataError, match="uint8"):
        distance_blur(img.astype(np.float32), np.ones((40, 60), np.float32), 2, 5, 70)
    with pytest.raises(ConfigError, match="blur.sigma"):
        distance_blur(img, np.ones((40, 60), np.float32), -1, 5, 70, name="F7")
    from sim2real.physics.frame import check_config
    with pytest.raises(ConfigError, match="visibility_m"):
        check_config({"haze": {"visibility_m": [-10, 100]}})
    with pytest.raises(ConfigError, match="blur.mode"):
        check_config({"blur": {"mode": "gauss"}})
    with pytest.raises(ConfigError, match="range"):
        check_config({"blur": {"sigma": [3, 1]}})
