"""Colour: per-channel Wasserstein-1 distance between pooled CIE Lab histograms."""
from __future__ import annotations

import cv2
import numpy as np

from sim2real.metrics.sharpness import check_rgb

LAB_RANGES = ((0.0, 100.0), (-128.0, 128.0), (-128.0, 128.0))
LAB_NAMES = ("L", "a", "b")


def lab_histograms(rgb: np.ndarray, bins: int = 64, stride: int = 2) -> np.ndarray:
    """Per-channel CIE Lab histograms (3, bins) int64 counts over fixed ranges (L 0–100, a/b ±128).

    ``stride`` subsamples pixels (every stride-th row and column) for speed.
    """
    check_rgb(rgb)
    lab = cv2.cvtColor(rgb[::stride, ::stride].astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    return np.stack([np.histogram(lab[..., c], bins=bins, range=LAB_RANGES[c])[0] for c in range(3)]).astype(np.int64)


def wasserstein_1d_hist(h1: np.ndarray, h2: np.ndarray, value_range: tuple[float, float]) -> float:
    """Wasserstein-1 distance between two histograms on the same bins (in the value's units)."""
    h1 = np.asarray(h1, dtype=np.float64)
    h2 = np.asarray(h2, dtype=np.float64)
    if h1.shape != h2.shape or h1.sum() <= 0 or h2.sum() <= 0:
        raise ValueError("histograms must have the same bins and be non-empty")
    width = (value_range[1] - value_range[0]) / len(h1)
    c1 = np.cumsum(h1 / h1.sum())
    c2 = np.cumsum(h2 / h2.sum())
    return float(np.sum(np.abs(c1 - c2)) * width)   # W1 = ∫|F1 − F2| for 1-D distributions
