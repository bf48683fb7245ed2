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


def make_real(rgb: np.ndarray, depth_m: np.ndarray, ray_m: np.ndarray, rng: np.random.Generator, *,
              softness_far_m: float = 70.0, visibility_m: float = 450.0, noise_sigma: float = 2.5,
              jpeg_quality: int = 75) -> np.ndarray:
    """Degrade a clean render into a "real" photo. rgb (H, W, 3) uint8 -> uint8."""
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
    airlight = np.array([205, 208, 212], np.float32)
    img = img * t + airlight * (1 - t)
    # 3. colour cast and softer contrast
    img = (img - 128) * 0.9 + 128
    img *= np.array([1.05, 1.0, 0.90], np.float32)
    # 4. sensor noise
    img += rng.normal(0, noise_sigma, img.shape).astype(np.float32)
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    # 5. compression
    return encode_jpeg_roundtrip(out, jpeg_quality)
