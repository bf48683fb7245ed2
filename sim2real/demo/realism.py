"""How the miniature world's "real" camera differs from the synthetic renderer.

This is deliberately separate from :mod:`sim2real.physics` (the augmentations under study), so
the pipeline has a gap to close that its own code did not create: a lens/atmosphere softness
that grows with distance, haze, a warm colour cast with lower contrast, sensor noise and JPEG
compression — the differences listed in the project brief between vKITTI2 and real KITTI.
"""
from __future__ import annotations

import cv2
import numpy as np

from sim2real.formats.images import encode_jpeg_roundtrip

BLUR_LEVELS_PX = (0.5, 1.0, 1.6, 2.3, 3.0)
#: the hidden camera's defaults (params.yaml ``demo.real_camera`` sets them; calibrate recovers them)
DEFAULTS = {"softness_far_m": 70.0, "visibility_m": 450.0, "noise_sigma": 2.5, "jpeg_quality": 75, "contrast": 0.9,
            "gains": (1.05, 1.0, 0.90), "airlight": (205.0, 208.0, 212.0), "palette": (1.0, 0.97, 0.93)}


def make_real(rgb: np.ndarray, depth_m: np.ndarray, ray_m: np.ndarray, rng: np.random.Generator, *,
              softness_far_m: float = 70.0, visibility_m: float = 450.0, noise_sigma: float = 2.5,
              jpeg_quality: int = 75, contrast: float = 0.9, gains=(1.05, 1.0, 0.90),
              airlight=(205.0, 208.0, 212.0)) -> np.ndarray:
    """Degrade a clean render into a "real" photo. rgb (H, W, 3) uint8 -> uint8.

    ``softness_far_m``: the depth where the blur reaches its last level (σ from 0.5 px at 0 m to
    3 px); ``visibility_m``: Koschmieder visibility (2 % threshold) towards ``airlight``;
    ``contrast`` about mid-gray and per-channel ``gains`` on the encoded values; Gaussian
    ``noise_sigma`` (gray levels, every channel); JPEG at ``jpeg_quality``. The scene palette
    (``palette``, applied by the renderer) is not part of this function.
    """
    img = rgb.astype(np.float32)
    # 1. softness growing with distance: blend precomputed blur levels per pixel
    z = np.where(np.isfinite(depth_m), depth_m, 1e4)
    pos = np.clip(z / softness_far_m, 0, 1) * (len(BLUR_LEVELS_PX) - 1)
    levels = [cv2.GaussianBlur(img, (0, 0), s) for s in BLUR_LEVELS_PX]
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(levels) - 1)
    frac = (pos - lo)[..., None]
    stack = np.stack(levels)
    rows, cols = np.indices(z.shape)
    img = stack[lo, rows, cols] * (1 - frac) + stack[hi, rows, cols] * frac
    # 2. haze (Koschmieder) towards a pale airlight
    beta = 3.912 / visibility_m
    t = np.exp(-beta * np.where(np.isfinite(ray_m), ray_m, 1e4))[..., None]
    air = np.asarray(airlight, np.float32)
    img = img * t + air * (1 - t)
    # 3. colour cast and softer contrast
    img = (img - 128) * float(contrast) + 128
    img *= np.asarray(gains, np.float32)
    # 4. sensor noise
    img += rng.normal(0, noise_sigma, img.shape).astype(np.float32)
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    # 5. compression
    return encode_jpeg_roundtrip(out, jpeg_quality)


def blur_sigma_px(depth_m: float, softness_far_m: float = 70.0) -> float:
    """The effective Gaussian σ (px) of the blur :func:`make_real` applies at ``depth_m``: the
    standard deviation of its blend of the two nearest blur levels, (1 − f)·G_a + f·G_b, whose
    kernel has variance (1 − f)·a² + f·b² (the second moment; the physics blur is a Gaussian)."""
    pos = min(max(depth_m / softness_far_m, 0.0), 1.0) * (len(BLUR_LEVELS_PX) - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, len(BLUR_LEVELS_PX) - 1)
    f = pos - lo
    return float(np.sqrt((1 - f) * BLUR_LEVELS_PX[lo] ** 2 + f * BLUR_LEVELS_PX[hi] ** 2))


def physics_equivalent(real_camera: dict, blur_at_m: float = 30.0, gamma: float = 2.2) -> dict:
    """The hidden camera in the physics model's terms (what calibrate should recover).

    - ``noise_sigma``: Gaussian σ in output gray levels = camera.read_sigma with shot_gain 0.
    - ``haze_visibility_m``: the same Koschmieder visibility (2 % threshold) = haze.visibility_m.
    - ``blur_sigma_at_30m_px``: :func:`blur_sigma_px` at ``blur_at_m``.
    - ``wb_gain_r`` / ``wb_gain_b``: realism scales the *encoded* values by palette × gains; a gain g
      on sRGB-encoded values is a gain of about g^2.2 on linear light (the sRGB curve's power-law
      approximation), and white balance is relative to green: ((p_c·g_c)/(p_g·g_g))^2.2.
    - ``contrast``: the same contrast about mid-grey of the encoded values = camera.contrast. The
      physics applies it after the gains, realism before them; for gains g near 1 the two differ
      by an offset of 128·(1 − contrast)·(g − 1) gray levels (−1.3 for the demo's blue channel).
    """
    rc = {**DEFAULTS, **(real_camera or {})}
    net = np.asarray(rc["palette"], float) * np.asarray(rc["gains"], float)
    return {"noise_sigma": float(rc["noise_sigma"]), "haze_visibility_m": float(rc["visibility_m"]),
            "blur_sigma_at_30m_px": blur_sigma_px(blur_at_m, float(rc["softness_far_m"])),
            "wb_gain_r": float((net[0] / net[1]) ** gamma), "wb_gain_b": float((net[2] / net[1]) ** gamma),
            "contrast": float(rc["contrast"])}
