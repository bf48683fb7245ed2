"""Radially averaged power spectrum, its log-log slope, and the image noise level."""
from __future__ import annotations

import functools

import numpy as np
from skimage.restoration import estimate_sigma

from sim2real.metrics.sharpness import check_rgb, luminance


def spectrum_bin_edges(n_bins: int = 24, f_min: float = 0.01, f_max: float = 0.45) -> np.ndarray:
    """Log-spaced radial frequency bin edges in cycles/px (``n_bins + 1`` values)."""
    return np.geomspace(f_min, f_max, int(n_bins) + 1)


@functools.lru_cache(maxsize=8)
def _spectrum_plan(shape: tuple[int, int], n_bins: int, f_min: float, f_max: float):
    """Hann window, radial bin index per rfft2 coefficient and bin counts, cached per image shape."""
    window = np.outer(np.hanning(shape[0]), np.hanning(shape[1])).astype(np.float32)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    idx = np.digitize(np.sqrt(fx * fx + fy * fy).ravel(), spectrum_bin_edges(n_bins, f_min, f_max)) - 1
    idx[(idx < 0) | (idx >= n_bins)] = n_bins          # out-of-range coefficients go to a dropped bin
    cnt = np.bincount(idx, minlength=n_bins + 1)[:n_bins]
    return window, idx, cnt


def radial_power_spectrum(gray: np.ndarray, n_bins: int = 24, f_min: float = 0.01,
                          f_max: float = 0.45) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of a gray image (Hann-windowed, mean removed).

    gray : (H, W) image, any real dtype (computed in float32). Returns (frequencies in cycles/px
    at log-spaced bin centres, log10 power per bin); bins without any frequency sample hold NaN.
    """
    import scipy.fft

    g = np.asarray(gray, dtype=np.float32)
    if g.ndim != 2 or min(g.shape) < 16:
        raise ValueError(f"expected a 2-D image at least 16x16, got {g.shape}")
    window, idx, cnt = _spectrum_plan(g.shape, int(n_bins), float(f_min), float(f_max))
    f = scipy.fft.rfft2((g - g.mean()) * window)
    p = (f.real.astype(np.float64) ** 2 + f.imag.astype(np.float64) ** 2) / g.size
    sums = np.bincount(idx, weights=p.ravel(), minlength=n_bins + 1)[:n_bins]
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.where(cnt > 0, np.log10(np.maximum(sums / np.maximum(cnt, 1), 1e-30)), np.nan)
    edges = spectrum_bin_edges(n_bins, f_min, f_max)
    return np.sqrt(edges[:-1] * edges[1:]), logp


def spectrum_slope(freqs: np.ndarray, log10_power: np.ndarray) -> float:
    """Least-squares slope of log10 power against log10 frequency (≈ −2 for natural images)."""
    ok = np.isfinite(log10_power)
    if ok.sum() < 3:
        raise ValueError("fewer than 3 populated spectrum bins")
    return float(np.polyfit(np.log10(freqs[ok]), log10_power[ok], 1)[0])


def noise_sigma(rgb: np.ndarray) -> float:
    """Gaussian noise standard deviation of the luminance (BT.601), in gray levels (0–255)
    (wavelet MAD estimator, ``skimage.restoration.estimate_sigma``; Donoho & Johnstone 1994).
    Independent per-channel noise σ gives a luminance σ of ≈ 0.67 σ."""
    check_rgb(rgb)
    return float(estimate_sigma(luminance(rgb), channel_axis=None))
