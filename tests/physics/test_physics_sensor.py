"""Lateral chromatic aberration, exposure / tone and white balance (sim2real.physics): identity at
zero strength, monotonicity, the formula at known pixels, and their place in the per-frame render."""
from __future__ import annotations

import numpy as np
import pytest

from sim2real.errors import ConfigError
from sim2real.physics import chromatic_aberration, display_contrast, exposure_tone, render, sample_values, temperature_gains, white_balance
from sim2real.physics.colour import linear_to_srgb, planckian_xy, srgb_to_linear
from sim2real.physics.frame import RANDOM_KEYS, VALUE_COLUMNS, check_config


def texture(h=60, w=90, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_zero_strength_is_an_identical_copy():
    img = texture()
    for out in (chromatic_aberration(img, 0.0), exposure_tone(img, 0.0, 1.0), white_balance(img), display_contrast(img, 1.0),
                white_balance(img, 1.0, 1.0, temperature_k=6504.0)):
        assert out.dtype == np.uint8 and np.array_equal(out, img) and out is not img


def test_srgb_transfer_round_trips_and_matches_the_standard():
    v = np.arange(256) / 255.0
    assert np.allclose(linear_to_srgb(srgb_to_linear(v)), v, atol=1e-12)
    assert srgb_to_linear(0.5) == pytest.approx(0.21404, abs=1e-5)  # IEC 61966-2-1 mid-gray


def test_chromatic_aberration_scales_red_and_blue_about_the_centre():
    h, w, cx, cy, k = 40, 201, 100.0, 20.0, 0.02
    ramp = np.broadcast_to(np.arange(w, dtype=np.float64)[None, :], (h, w))
    img = np.stack([ramp, ramp, ramp], -1).clip(0, 255).astype(np.uint8)
    out = chromatic_aberration(img, k, center=(cx, cy)).astype(np.float64)
    x = 180  # dst(x) = src(cx + (x - cx) / s): red magnified by 1 + k, blue by 1 - k
    assert out[20, x, 0] == pytest.approx(cx + (x - cx) / (1 + k), abs=0.55)
    assert out[20, x, 2] == pytest.approx(cx + (x - cx) / (1 - k), abs=0.55)
    assert out[20, x, 1] == x and out[20, 100, 0] == 100  # green and the centre stay
    # monotone: the red-green misregistration at the frame edge grows with k
    shift = [np.abs(chromatic_aberration(img, kk, center=(cx, cy))[20, 190, 0].astype(int) - 190) for kk in (0.005, 0.01, 0.03)]
    assert shift[0] < shift[1] < shift[2]
    with pytest.raises(ConfigError, match="chromatic_aberration"):
        chromatic_aberration(img, 0.7)


def test_exposure_and_tone_in_linear_light():
    gray = np.full((4, 4, 3), 128, np.uint8)
    one_stop = exposure_tone(gray, 1.0)[0, 0, 0]  # linear light doubles: decode, x2, encode
    assert one_stop == round(255 * float(linear_to_srgb(2 * srgb_to_linear(128 / 255))))
    assert one_stop == 176  # a gain of 2 on the encoded value would saturate (2 x 128 > 255)
    levels = [int(exposure_tone(gray, ev)[0, 0, 0]) for ev in (-2, -1, -0.5, 0, 0.5, 1)]
    assert levels == sorted(levels) and len(set(levels)) == len(levels)
    tones = [int(exposure_tone(gray, 0.0, g)[0, 0, 0]) for g in (0.6, 0.8, 1.0, 1.25, 1.6)]
    assert tones == sorted(tones, reverse=True) and len(set(tones)) == len(tones)
    assert exposure_tone(np.full((2, 2, 3), 255, np.uint8), 0.0, 1.7)[0, 0, 0] == 255  # white stays white
    assert exposure_tone(np.full((2, 2, 3), 200, np.uint8), 3.0)[0, 0, 0] == 255  # saturates


def test_contrast_about_mid_grey_of_the_encoded_signal():
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    flat = display_contrast(ramp, 0.9)[0, :, 0].astype(int)
    assert flat[200] == round((200 / 255 - 0.5) * 0.9 * 255 + 127.5)           # (v - 1/2) k + 1/2 at a known pixel
    assert flat[0] == round(0.05 * 255) and flat[255] == round(0.95 * 255)    # lifted blacks, dimmed whites
    spreads = [int(np.ptp(display_contrast(ramp, k)[0, :, 0])) for k in (0.5, 0.8, 0.9, 1.0, 1.2)]
    assert spreads == sorted(spreads) and spreads[-1] == 255                  # monotone in k; clipped above 1
    assert display_contrast(np.full((2, 2, 3), 128, np.uint8), 0.6)[0, 0, 0] == 128  # mid-grey stays
    with pytest.raises(ConfigError, match="camera.contrast"):
        display_contrast(ramp, 0.0)


def test_planckian_locus_and_temperature_gains():
    # Kim et al. splines vs published CIE 1931 chromaticities of black bodies (Wyszecki & Stiles)
    assert planckian_xy(2856.0) == pytest.approx((0.4476, 0.4074), abs=2e-3)   # illuminant A
    assert planckian_xy(6500.0) == pytest.approx((0.3135, 0.3237), abs=2e-3)
    assert np.allclose(temperature_gains(6504.0), 1.0)
    temps = [2500, 3500, 5000, 6504, 8000, 12000]
    g = np.array([temperature_gains(t) for t in temps])
    assert np.all(g[:, 1] == 1.0)
    assert np.all(np.diff(g[:, 0]) < 0) and np.all(np.diff(g[:, 2]) > 0)  # warmer: more red, less blue
    with pytest.raises(ConfigError, match="wb_temperature_k"):
        temperature_gains(1000.0)


def test_white_balance_gains_at_a_known_pixel():
    px = np.array([[[120, 120, 120]]], np.uint8)
    out = white_balance(px, gain_r=1.2, gain_b=0.8)[0, 0]
    lin = srgb_to_linear(120 / 255)
    assert out[0] == round(255 * float(linear_to_srgb(1.2 * lin))) and out[1] == 120
    assert out[2] == round(255 * float(linear_to_srgb(0.8 * lin)))
    warm = white_balance(px, temperature_k=3200.0)[0, 0].astype(int)
    cool = white_balance(px, temperature_k=10000.0)[0, 0].astype(int)
    assert warm[0] > 120 > warm[2] and cool[0] < 120 < cool[2]


def test_new_effects_are_drawn_after_the_old_ones_and_logged():
    old = {"blur": {"sigma": [1.0, 3.0]}, "camera": {"read_sigma": [1.0, 2.0]}}
    new = {**old, "camera": {**old["camera"], "exposure_stops": [-0.5, 0.5], "wb_gain_r": [0.9, 1.1],
                             "chromatic_aberration": 0.001, "tone_gamma": 1.1, "contrast": [0.9, 1.0]}}
    a, b = sample_values(old, 0, "f1"), sample_values(new, 0, "f1")
    assert all(a[col] == b[col] for _, _, col, _ in RANDOM_KEYS) and a["noise_seed"] == b["noise_seed"]
    assert -0.5 <= b["camera_exposure_stops"] <= 0.5 and 0.9 <= b["camera_wb_gain_r"] <= 1.1
    assert 0.9 <= b["camera_contrast"] <= 1.0 and a["camera_contrast"] is None
    assert a["camera_exposure_stops"] is None and {"camera_wb_temperature_k", "camera_chromatic_aberration"} <= set(VALUE_COLUMNS)
    check_config(new)
    for bad in ({"tone_gamma": 0}, {"contrast": 0}, {"wb_gain_b": -1}, {"wb_temperature_k": 900}, {"chromatic_aberration": 0.6}):
        with pytest.raises(ConfigError, match="camera\\."):
            check_config({"camera": bad})


def test_render_applies_lens_then_colour_then_noise():
    img = texture(48, 64, seed=3)
    depth = np.full(img.shape[:2], 20.0, np.float32)
    params = {"camera": {"exposure_stops": 0.5, "wb_gain_r": 1.1, "wb_gain_b": 0.9, "tone_gamma": 1.0,
                         "chromatic_aberration": 0.01, "contrast": 0.9}}
    v = sample_values(params, 0, "f")
    out = render(img, depth, None, (60.0, 60.0, 31.5, 23.5), params, v)[0]
    ref = display_contrast(exposure_tone(white_balance(chromatic_aberration(img, 0.01, (31.5, 23.5)), 1.1, 0.9), 0.5),
                           0.9)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 2  # one table vs three roundings
    noisy = render(img, depth, None, None, {"camera": {**params["camera"], "read_sigma": 2.0}}, v | {"camera_read_sigma": 2.0})[0]
    assert not np.array_equal(noisy, out)
