"""Blur-vs-distance: noise-corrected, contrast-normalised sharpness inside object boxes, binned by
box height (the distance proxy real KITTI offers). See :mod:`sim2real.metrics.gap` for the model."""
from __future__ import annotations

import functools
from typing import Sequence

import cv2
import numpy as np
import pandas as pd

from skimage.restoration import estimate_sigma

from sim2real.errors import ConfigError, DataError


def check_rgb(rgb: np.ndarray, where: str = "<image>") -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DataError(where, f"expected an RGB uint8 (H, W, 3) image, got "
                               f"{getattr(rgb, 'shape', None)} {getattr(rgb, 'dtype', type(rgb).__name__)}")


def luminance(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (H, W) luminance in gray levels 0–255 (ITU-R BT.601)."""
    check_rgb(rgb)
    f = rgb.astype(np.float32)
    return f[..., 0] * np.float32(0.299) + f[..., 1] * np.float32(0.587) + f[..., 2] * np.float32(0.114)


@functools.lru_cache(maxsize=8)
def noise_gain(denoise_sigma_px: float) -> tuple[float, float]:
    """(variance gain, gradient-energy gain) of the sharpness filters for unit white noise.

    White noise of standard deviation σn adds ``gain_v·σn²`` to a box's variance and ``gain_g·σn²``
    to its mean squared gradient after the Gaussian pre-filter; measured once on a fixed-seed
    512×512 N(0, 1) image (exact for the discrete filters, unlike the continuous formulas).
    """
    n = np.random.default_rng(0).normal(0.0, 1.0, (512, 512)).astype(np.float32)
    smooth, energy = _filtered(n, denoise_sigma_px)
    return float(smooth[8:-8, 8:-8].var()), float(energy[8:-8, 8:-8].mean())


def _filtered(gray: np.ndarray, denoise_sigma_px: float) -> tuple[np.ndarray, np.ndarray]:
    smooth = cv2.GaussianBlur(gray, (0, 0), denoise_sigma_px) if denoise_sigma_px > 0 else gray
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3) / 8.0   # Sobel/8: smoothed central difference
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    return smooth, gx * gx + gy * gy


def box_sharpness(rgb: np.ndarray, boxes_xyxy: np.ndarray, *, denoise_sigma_px: float = 0.5,
                  noise_sigma_gray: float | None = None, min_size_px: int = 8, eps: float = 1.0) -> np.ndarray:
    """Noise-corrected, contrast-normalised gradient energy inside each box.

    ``S = (mean|∇s|² − g_g·σn²) / (max(var(s) − g_v·σn², 0) + eps)`` with ``s = G_σ * I`` the
    denoised luminance, σn the image's noise level and (g_v, g_g) from :func:`noise_gain`: the
    expected contribution of white sensor noise is subtracted, so noise does not read as
    sharpness, and dividing by the box's own (noise-free) variance makes S blind to contrast,
    haze and colour casts.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 image.
    boxes_xyxy : (N, 4) float pixel boxes (left, top, right, bottom); clipped to the image.
    denoise_sigma_px : Gaussian pre-filter sigma in pixels (0 = none).
    noise_sigma_gray : noise standard deviation of the luminance in gray levels; None estimates it
        (``skimage.restoration.estimate_sigma``); 0 disables the correction.
    min_size_px : boxes narrower or shorter than this (after clipping) get NaN.
    eps : regulariser added to the box variance, in gray levels² (flat boxes -> ~0, not inf).

    Returns
    -------
    (N,) float64 sharpness in px⁻² (mean squared gradient / variance); NaN for boxes too small
    or whose gradient energy does not exceed the noise's. Invariant to ``a·I + b`` intensity
    changes (up to ``eps``); decreases under blur.
    """
    check_rgb(rgb)
    return _box_sharpness_gray(luminance(rgb), boxes_xyxy, denoise_sigma_px, noise_sigma_gray, min_size_px, eps)


def _box_sharpness_gray(gray: np.ndarray, boxes_xyxy: np.ndarray, denoise_sigma_px: float,
                        noise_sigma_gray: float | None, min_size_px: int, eps: float) -> np.ndarray:
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    if denoise_sigma_px < 0:
        raise ConfigError(f"gap.denoise_sigma_px must be >= 0, got {denoise_sigma_px}")
    if noise_sigma_gray is None:
        noise_sigma_gray = float(estimate_sigma(gray, channel_axis=None))
    gain_v, gain_g = noise_gain(float(denoise_sigma_px))
    nv = float(noise_sigma_gray) ** 2
    smooth, energy = _filtered(gray, denoise_sigma_px)
    h, w = gray.shape
    out = np.full(len(boxes), np.nan)
    for i, (l, t, r, b) in enumerate(boxes):
        x0, y0 = max(int(np.floor(l)), 0), max(int(np.floor(t)), 0)
        x1, y1 = min(int(np.ceil(r)), w), min(int(np.ceil(b)), h)
        if x1 - x0 < min_size_px or y1 - y0 < min_size_px:
            continue
        # 1-px margin: the filters read outside the box at its border
        e = float(energy[y0 + 1:y1 - 1, x0 + 1:x1 - 1].mean()) - gain_g * nv
        v = float(smooth[y0 + 1:y1 - 1, x0 + 1:x1 - 1].var()) - gain_v * nv
        if e > 0:
            out[i] = e / (max(v, 0.0) + eps)
    return out


def blur_profile(heights_px: np.ndarray, sharpness: np.ndarray, bin_edges_px: Sequence[float]) -> pd.DataFrame:
    """Median log10 sharpness per box-height bin.

    Parameters
    ----------
    heights_px : (N,) box heights in pixels (the distance proxy: far objects are short).
    sharpness : (N,) values from :func:`box_sharpness` (NaN entries are dropped).
    bin_edges_px : increasing edges; bin k holds ``edges[k] <= h < edges[k+1]``.

    Returns
    -------
    DataFrame with one row per bin: height_lo_px, height_hi_px, height_px (geometric centre), n,
    median_log10_sharpness (NaN when n == 0), q25, q75.
    """
    edges = np.asarray(bin_edges_px, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0) or edges[0] <= 0:
        raise ConfigError(f"gap.height_bins_px must be >= 2 positive increasing edges, got {list(bin_edges_px)}")
    h = np.asarray(heights_px, dtype=np.float64)
    s = np.asarray(sharpness, dtype=np.float64)
    if h.shape != s.shape:
        raise ValueError(f"heights_px {h.shape} and sharpness {s.shape} differ in shape")
    ok = np.isfinite(h) & np.isfinite(s) & (s > 0)
    h, ls = h[ok], np.log10(s[ok])
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        v = ls[(h >= lo) & (h < hi)]
        med, q25, q75 = (np.nan,) * 3 if len(v) == 0 else (float(np.median(v)), *map(float, np.percentile(v, [25, 75])))
        rows.append(dict(height_lo_px=lo, height_hi_px=hi, height_px=float(np.sqrt(lo * hi)), n=int(len(v)),
                         median_log10_sharpness=med, q25_log10_sharpness=q25, q75_log10_sharpness=q75))
    return pd.DataFrame(rows)


def profile_distance(sim: pd.DataFrame, real: pd.DataFrame, min_count: int = 3) -> tuple[float, int]:
    """Count-weighted mean |Δ median log10 sharpness| over bins with >= ``min_count`` boxes on both sides.

    Returns (distance in decades of sharpness, number of bins used). Weights are
    ``min(n_sim, n_real)``. Raises ValueError when no bin qualifies (too few boxes).
    """
    if len(sim) != len(real) or not np.allclose(sim["height_lo_px"], real["height_lo_px"]):
        raise ValueError("profiles have different bins")
    use = (sim["n"].to_numpy() >= min_count) & (real["n"].to_numpy() >= min_count)
    if not use.any():
        raise ValueError(f"no height bin has >= {min_count} boxes on both sides "
                         f"(sim counts {sim['n'].tolist()}, real counts {real['n'].tolist()})")
    d = np.abs(sim["median_log10_sharpness"].to_numpy()[use] - real["median_log10_sharpness"].to_numpy()[use])
    w = np.minimum(sim["n"].to_numpy()[use], real["n"].to_numpy()[use]).astype(np.float64)
    return float(np.sum(w * d) / np.sum(w)), int(use.sum())
