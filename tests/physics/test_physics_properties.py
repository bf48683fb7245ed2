"""Property-based tests (hypothesis) for the physics invariants, over generated images and depth maps:
identity at zero strength, blur monotone in depth, Koschmieder's formula, haze never moves a pixel
away from the airlight."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import example, given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from sim2real.physics import distance_blur, distance_sigma_px, haze, sensor_noise, transmission, vignetting

SETTINGS = settings(max_examples=25, deadline=None)
shapes = st.tuples(st.integers(4, 24), st.integers(4, 32))


@st.composite
def frames(draw, sky=True):
    """An RGB uint8 image and a float32 z-depth map (metres, optionally with +inf sky pixels)."""
    h, w = draw(shapes)
    img = draw(arrays(np.uint8, (h, w, 3)))
    depth = draw(arrays(np.float32, (h, w), elements=st.floats(0.5, 500.0, width=32)))
    if sky and draw(st.booleans()):
        depth[: max(1, h // 4)] = np.inf
    return img, depth


@SETTINGS
@given(frames(), st.floats(0.5, 20), st.floats(50, 200))
def test_zero_strength_is_an_identical_copy(frame, near_m, far_m):
    img, depth = frame
    assert np.array_equal(distance_blur(img, depth, 0.0, near_m, far_m), img)
    assert np.array_equal(haze(img, depth, math.inf), img)
    assert np.array_equal(sensor_noise(img, np.random.default_rng(0), 0.0, 0.0), img)
    assert np.array_equal(vignetting(img, 0.0), img)


@SETTINGS
@given(arrays(np.float32, 64, elements=st.floats(0.125, 1000.0, width=32)), st.floats(0.1, 10), st.floats(0.5, 30),
       st.floats(1, 200), st.sampled_from(["linear", "power", "smoothstep"]), st.floats(0.3, 3))
@example(np.full(64, 14.0, np.float32), 1.903411493169689, 13.0, 1.0, "linear", 1.0)  # float32 rounding at far_m
@example(np.full(64, 1.0, np.float32), 1.903411493169689, 13.0, 1.0, "linear", 1.0)   # ... and below near_m
def test_blur_sigma_is_monotone_in_depth_and_bounded(depth, sigma_px, near_m, span_m, curve, power):
    depth = np.sort(depth)
    s = distance_sigma_px(depth, sigma_px, near_m, near_m + span_m, curve=curve, power=power)
    assert np.all(np.diff(s) >= -1e-6)
    assert s.min() >= 0 and s.max() <= sigma_px + 1e-6
    assert np.all(s[depth <= near_m] == 0)  # sharp up to near_m


@SETTINGS
@given(frames(sky=False), st.floats(20, 5000), st.integers(0, 255))
def test_haze_follows_koschmieder_at_every_pixel(frame, visibility_m, gray):
    img, depth = frame
    out = haze(img, depth, visibility_m, airlight=float(gray)).astype(np.float64)
    t = np.exp(-3.912 / visibility_m * depth.astype(np.float64))[..., None]
    expected = img * t + gray * (1 - t)
    assert np.abs(out - expected).max() <= 1.0


@SETTINGS
@given(frames(), st.floats(20, 5000), st.integers(0, 255))
def test_haze_only_pulls_towards_the_airlight_and_transmission_falls_with_depth(frame, visibility_m, gray):
    img, depth = frame
    out = haze(img, depth, visibility_m, airlight=float(gray)).astype(int)
    assert np.all(np.abs(out - gray) <= np.abs(img.astype(int) - gray) + 1)
    order = np.argsort(depth, axis=None)
    t = transmission(depth, visibility_m).ravel()[order]
    assert np.all(np.diff(t) <= 1e-7) and np.all((t >= 0) & (t <= 1))
