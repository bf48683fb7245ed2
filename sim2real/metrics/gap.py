"""Domain-gap statistics between a set of synthetic (variant) images and real KITTI images.

One function per idea, numpy in, numbers out; :func:`compare_domains` runs them all on two
image sets and returns the JSON-ready result. Every metric below is a distance between the two
domains: **lower is better** (the variant looks more like real), except the raw per-domain
numbers (spectrum slopes, noise sigmas) which are reported for both sides.

1. **Blur-vs-distance profile** (:func:`box_sharpness`, :func:`blur_profile`,
   :func:`profile_distance`). Sharpness inside each object box is a *noise-corrected,
   contrast-normalised gradient energy* after a small Gaussian denoise::

       S = (mean|∇(G_σ * I)|² − g_g·σn²) / (var(G_σ * I) − g_v·σn² + ε)        [px⁻²]

   on luminance I (0–255), σ = ``denoise_sigma_px``, σn the image's noise level
   (``estimate_sigma``) and g_g, g_v the filters' white-noise gains (:func:`noise_gain`).
   Dividing by the box's own variance makes S blind to haze, contrast and colour casts (an
   affine intensity change leaves it unchanged), so it measures blur; subtracting the noise's
   expected share keeps sensor noise from reading as sharpness. S is binned by box
   height in pixels — the distance proxy available on real KITTI, which has no dense depth.
   The profile is the median log10 S per bin; the scalar distance is the count-weighted mean
   absolute difference of the two profiles over bins populated on both sides (unit: decades of
   S, i.e. 0.3 ≈ a factor 2 in sharpness).
2. **Colour**: per-channel 1-D Wasserstein-1 distance between pooled CIE Lab histograms
   (units: L in 0–100, a/b in Lab units).
3. **Spectrum**: slope of the radially averaged power spectrum in log-log (natural images ≈ −2;
   blur steepens it, noise flattens it) and the luminance noise level from ``estimate_sigma``
   (gray levels, 0–255), both per image; distances are absolute differences of the domain means.
4. **Feature-distribution distance**: KID (and FID when both sides have more images than the
   feature dimension) with torchmetrics on features of an Inception-v3 (weights only from a local
   file or the torch hub cache, never downloaded) or, when none is available, of a fixed-seed,
   randomly initialised CNN (Naeem et al. 2020 show random embeddings are usable for such
   distances). The extractor in use is always written to the output (``feature_extractor``);
   values from different extractors are not comparable.
5. **Proxy A-distance**: a linear domain classifier (standardised logistic regression) on per-image
   features (the handcrafted statistics above plus the extractor features), stratified k-fold
   cross-validated; ε = 1 − balanced accuracy, d_A = 2(1 − 2ε) clipped to [0, 2]
   (0: indistinguishable, 2: perfectly separable).

References
----------
Pech-Pacheco et al., "Diatom autofocusing in brightfield microscopy: a comparative study",
ICPR 2000 (variance of Laplacian / gradient energy focus measures).
van der Schaaf & van Hateren, "Modelling the power spectra of natural images", Vision Research 1996.
Donoho & Johnstone, "Ideal spatial adaptation by wavelet shrinkage", Biometrika 1994 (estimate_sigma).
Bińkowski et al., "Demystifying MMD GANs", ICLR 2018 (KID).
Heusel et al., "GANs trained by a two time-scale update rule converge to a local Nash
equilibrium", NeurIPS 2017 (FID).
Naeem et al., "Reliable Fidelity and Diversity Metrics for Generative Models", ICML 2020
(randomly initialised embeddings).
Ben-David et al., "Analysis of representations for domain adaptation", NeurIPS 2007, and
Ganin et al., "Domain-adversarial training of neural networks", JMLR 2016 (proxy A-distance).
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pandas as pd

from skimage.restoration import estimate_sigma

from sim2real.errors import ConfigError, DataError
from sim2real.safety import load_torch_file, state_dict_mismatch

LAB_RANGES = ((0.0, 100.0), (-128.0, 128.0), (-128.0, 128.0))
LAB_NAMES = ("L", "a", "b")
INCEPTION_CACHE_NAME = "inception_v3_google-0cc3c7bd.pth"  # torchvision's ImageNet Inception-v3 file
INCEPTION_PARAM = "gap.kid.inception_weights"
FALLBACK_NAME = "random-fallback"


# ----------------------------------------------------------------------------- checks
def _check_rgb(rgb: np.ndarray, where: str = "<image>") -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DataError(where, f"expected an RGB uint8 (H, W, 3) image, got "
                               f"{getattr(rgb, 'shape', None)} {getattr(rgb, 'dtype', type(rgb).__name__)}")


def luminance(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (H, W) luminance in gray levels 0–255 (ITU-R BT.601)."""
    _check_rgb(rgb)
    f = rgb.astype(np.float32)
    return f[..., 0] * np.float32(0.299) + f[..., 1] * np.float32(0.587) + f[..., 2] * np.float32(0.114)


# ----------------------------------------------------------------------------- 1. blur profile
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
    _check_rgb(rgb)
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


# ----------------------------------------------------------------------------- 2. colour
def lab_histograms(rgb: np.ndarray, bins: int = 64, stride: int = 2) -> np.ndarray:
    """Per-channel CIE Lab histograms (3, bins) int64 counts over fixed ranges (L 0–100, a/b ±128).

    ``stride`` subsamples pixels (every stride-th row and column) for speed.
    """
    _check_rgb(rgb)
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


# ----------------------------------------------------------------------------- 3. spectrum + noise
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
    _check_rgb(rgb)
    return float(estimate_sigma(luminance(rgb), channel_axis=None))


# ----------------------------------------------------------------------------- per-image stats
@dataclass
class ImageStats:
    """Everything the gap metrics need from one image (small; returned from worker processes)."""

    image_id: str
    heights_px: np.ndarray            # (N,) box heights
    sharpness: np.ndarray             # (N,) box sharpness, px⁻² (NaN: box too small)
    lab_hist: np.ndarray              # (3, bins) counts
    lab_mean: np.ndarray              # (3,)
    lab_std: np.ndarray               # (3,)
    log10_power: np.ndarray           # (n_bins,)
    slope: float
    noise_sigma: float
    global_log10_sharpness: float     # whole-image contrast-normalised gradient energy (log10)
    thumb: np.ndarray = field(repr=False, default=None)  # (h, w, 3) uint8 for the feature extractor

    def handcrafted(self) -> np.ndarray:
        """Per-image feature vector for the domain classifier (10 values)."""
        return np.concatenate([self.lab_mean, self.lab_std,
                               [self.slope, np.log10(self.noise_sigma + 1e-3), self.global_log10_sharpness,
                                np.nanmedian(np.log10(self.sharpness)) if np.isfinite(self.sharpness).any()
                                else self.global_log10_sharpness]])


def image_stats(rgb: np.ndarray, boxes_xyxy: np.ndarray, *, image_id: str = "", denoise_sigma_px: float = 0.5,
                min_box_px: int = 8, lab_bins: int = 64, spectrum_bins: int = 24,
                thumb_hw: tuple[int, int] = (128, 384)) -> ImageStats:
    """Compute :class:`ImageStats` of one RGB uint8 image with its (N, 4) xyxy pixel boxes."""
    _check_rgb(rgb, image_id or "<image>")
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    gray = luminance(rgb)
    noise = float(estimate_sigma(gray, channel_axis=None))
    h, w = rgb.shape[:2]
    # the object boxes and the whole image (last row) in one filtering pass
    sharp = _box_sharpness_gray(gray, np.vstack([boxes, [[0, 0, w, h]]]), denoise_sigma_px, noise, min_box_px, 1.0)
    whole = sharp[-1] if np.isfinite(sharp[-1]) else 1e-6
    lab = cv2.cvtColor(rgb[::2, ::2].astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    hist = np.stack([np.histogram(lab[..., c], bins=lab_bins, range=LAB_RANGES[c])[0] for c in range(3)]).astype(np.int64)
    lab = lab.reshape(-1, 3)
    freqs, logp = radial_power_spectrum(gray, n_bins=spectrum_bins)
    thumb = cv2.resize(rgb, (thumb_hw[1], thumb_hw[0]), interpolation=cv2.INTER_AREA)
    return ImageStats(image_id=image_id, heights_px=boxes[:, 3] - boxes[:, 1], sharpness=sharp[:-1],
                      lab_hist=hist, lab_mean=lab.mean(0), lab_std=lab.std(0),
                      log10_power=logp, slope=spectrum_slope(freqs, logp), noise_sigma=noise,
                      global_log10_sharpness=float(np.log10(max(whole, 1e-12))), thumb=thumb)


# ----------------------------------------------------------------------------- 4. features, KID/FID
def _torch():
    import torch
    return torch


class RandomConvFeatures:
    """A fixed-seed, randomly initialised 4-layer CNN: uint8 (N, 3, H, W) -> (N, 240) features.

    Features are the global average (post-ReLU) of every layer, concatenated (16+32+64+128 = 240);
    deterministic for a given seed. Used only when no Inception weights are available locally.
    """

    def __new__(cls, seed: int = 0):
        torch = _torch()
        nn = torch.nn

        class _Net(nn.Module):
            def __init__(self):
                super().__init__()
                gen = torch.Generator().manual_seed(int(seed))
                chans = [3, 16, 32, 64, 128]
                self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(chans[:-1], chans[1:]))
                with torch.no_grad():
                    for conv in self.convs:   # He-normal init from our own generator (not the global RNG)
                        fan_in = conv.in_channels * 9
                        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * np.sqrt(2.0 / fan_in))
                        conv.bias.zero_()
                self.num_features = sum(chans[1:])
                self.eval()

            def forward(self, x):
                x = x.float() / 127.5 - 1.0
                feats = []
                for conv in self.convs:
                    x = torch.relu(conv(x))
                    feats.append(x.mean(dim=(2, 3)))
                return torch.cat(feats, dim=1)

        return _Net()


def find_inception_weights(path: str | None) -> Path | None:
    """Local Inception-v3 weights: ``path`` when given (must exist), else the torch hub cache file
    ``<TORCH_HOME>/hub/checkpoints/inception_v3_google-0cc3c7bd.pth`` when present, else None.
    Never downloads."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"gap.kid.inception_weights: {p} not found (set it to a local torchvision "
                              f"Inception-v3 state dict, or null to use the cache / the random fallback)")
        return p
    torch = _torch()
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_CACHE_NAME
    return cached if cached.is_file() else None


def load_feature_extractor(inception_weights: str | None, seed: int, thumb_hw: tuple[int, int]):
    """Return (module, name, input_hw). The module maps uint8 (N, 3, h, w) to (N, D) float features."""
    torch = _torch()
    weights = find_inception_weights(inception_weights)
    if weights is None:
        return RandomConvFeatures(seed), FALLBACK_NAME, tuple(thumb_hw)
    param = INCEPTION_PARAM if inception_weights else f"{INCEPTION_PARAM} is null: torch hub cache"
    state = load_torch_file(weights, what="Inception-v3 weights", param=param,  # weights_only=True, one line
                            hint=f"set {INCEPTION_PARAM} to torchvision's {INCEPTION_CACHE_NAME}")
    import torchvision

    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    problem = (f"a {type(state).__name__}, not a state dict" if not isinstance(state, dict)
               else state_dict_mismatch(net.state_dict(), state))
    if problem is not None:
        raise ConfigError(f"{INCEPTION_PARAM}: {weights} is not a torchvision Inception-v3 state dict ({problem})")
    net.load_state_dict(state)
    net.fc = torch.nn.Identity()
    net.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    class _Pool3(torch.nn.Module):
        num_features = 2048

        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net((x.float() / 255.0 - mean) / std)

    return _Pool3(), f"inception-v3-torchvision:{weights.name}", (299, 299)


def extract_features(module, thumbs: Sequence[np.ndarray], batch: int = 16) -> np.ndarray:
    """(N, D) float64 features of uint8 (h, w, 3) images (all the same size)."""
    torch = _torch()
    out = []
    with torch.no_grad():
        for i in range(0, len(thumbs), batch):
            x = torch.from_numpy(np.stack(thumbs[i:i + batch])).permute(0, 3, 1, 2).contiguous()
            out.append(module(x).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def kid_fid(sim_feats: np.ndarray, real_feats: np.ndarray, *, subset_size: int, subsets: int, seed: int,
            fid_min_n: int | None = None) -> dict:
    """KID (mean, std over subsets) and, when both sides have >= ``fid_min_n`` samples
    (default: feature dimension + 1, so the covariances are full rank), FID; torchmetrics.

    ``subset_size`` is capped at the smaller sample count (reported as ``kid_subset_size``).
    Subset sampling uses ``seed`` without touching the global torch RNG.
    """
    torch = _torch()
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    n = min(len(sim_feats), len(real_feats))
    if n < 2:
        raise ValueError(f"KID needs at least 2 images per side, got {len(sim_feats)} sim and {len(real_feats)} real")
    dim = sim_feats.shape[1]
    ident = torch.nn.Identity()
    ident.num_features = dim
    size = int(min(subset_size, n))
    out: dict = {"kid_subset_size": size, "kid_subsets": int(subsets), "n_sim": int(len(sim_feats)),
                 "n_real": int(len(real_feats)), "feature_dim": int(dim)}
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        torch.manual_seed(int(seed))
        kid = KernelInceptionDistance(feature=ident, subsets=int(subsets), subset_size=size)
        kid.update(torch.from_numpy(real_feats).double(), real=True)
        kid.update(torch.from_numpy(sim_feats).double(), real=False)
        mean, std = kid.compute()
    out["kid"] = float(mean)
    out["kid_std"] = float(std)
    need = dim + 1 if fid_min_n is None else int(fid_min_n)
    if n >= need:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            fid = FrechetInceptionDistance(feature=ident)
            fid.update(torch.from_numpy(real_feats).double(), real=True)
            fid.update(torch.from_numpy(sim_feats).double(), real=False)
            out["fid"] = float(fid.compute())
    else:
        out["fid_skipped"] = f"FID needs >= {need} images per side (feature dim {dim}); have {n}"
    return out


# ----------------------------------------------------------------------------- 5. proxy A-distance
def proxy_a_distance(x_sim: np.ndarray, x_real: np.ndarray, *, folds: int = 5, seed: int = 0,
                     C: float = 1.0) -> dict:
    """Cross-validated linear domain classifier -> proxy A-distance.

    Parameters
    ----------
    x_sim, x_real : (N, D) per-image features of each domain (same D).
    folds : stratified k-fold splits (capped at the smaller class size, >= 2).

    Returns
    -------
    {"pad": d_A in [0, 2], "pad_error": ε (1 − balanced accuracy), "pad_folds": k}.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([x_sim, x_real]).astype(np.float64)
    y = np.r_[np.zeros(len(x_sim), int), np.ones(len(x_real), int)]
    k = int(min(folds, len(x_sim), len(x_real)))
    if k < 2:
        raise ValueError(f"proxy A-distance needs >= 2 images per side, got {len(x_sim)} sim and {len(x_real)} real")
    if not np.isfinite(x).all():
        raise ValueError("non-finite per-image features")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=2000))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=int(seed))
    acc = float(np.mean(cross_val_score(clf, x, y, cv=cv, scoring="balanced_accuracy")))
    err = 1.0 - acc
    return {"pad": float(np.clip(2.0 * (1.0 - 2.0 * err), 0.0, 2.0)), "pad_error": err, "pad_folds": k}


# ----------------------------------------------------------------------------- all together
@dataclass
class GapSettings:
    """The ``gap`` params section, typed."""

    height_bins_px: Sequence[float] = (10, 25, 50, 100, 400)
    min_bin_count: int = 3
    denoise_sigma_px: float = 0.5
    min_box_px: int = 8
    lab_bins: int = 64
    spectrum_bins: int = 24
    kid_subset_size: int = 50
    kid_subsets: int = 50
    inception_weights: str | None = None
    thumb_hw: tuple[int, int] = (128, 384)
    pad_folds: int = 5
    seed: int = 0

    @classmethod
    def from_params(cls, gap: dict, seed: int) -> "GapSettings":
        kid = gap.get("kid", {}) or {}
        pad = gap.get("pad", {}) or {}
        return cls(height_bins_px=tuple(gap["height_bins_px"]), min_bin_count=int(gap["min_bin_count"]),
                   denoise_sigma_px=float(gap["denoise_sigma_px"]), min_box_px=int(gap["min_box_px"]),
                   lab_bins=int(gap["lab_bins"]), spectrum_bins=int(gap["spectrum_bins"]),
                   kid_subset_size=int(kid["subset_size"]), kid_subsets=int(kid["subsets"]),
                   inception_weights=kid.get("inception_weights"), thumb_hw=tuple(kid["image_hw"]),
                   pad_folds=int(pad["folds"]), seed=int(seed))


def compare_domains(sim: Sequence[ImageStats], real: Sequence[ImageStats], s: GapSettings) -> tuple[dict, dict]:
    """All gap metrics between two lists of :class:`ImageStats`.

    Returns (result, curves): ``result`` is the JSON-ready dict (see the module docstring for
    units and directions), ``curves`` holds DataFrames ``blur_profile`` (one row per height bin:
    height_px, sim/real median log10 sharpness and counts) and ``spectrum`` (frequency_cpp,
    sim/real mean log10 power).
    """
    if len(sim) < 2 or len(real) < 2:
        raise ValueError(f"need >= 2 images per side, got {len(sim)} sim and {len(real)} real")
    # 1. blur profile
    cat = lambda xs, a: np.concatenate([getattr(x, a) for x in xs]) if xs else np.zeros(0)  # noqa: E731
    prof_s = blur_profile(cat(sim, "heights_px"), cat(sim, "sharpness"), s.height_bins_px)
    prof_r = blur_profile(cat(real, "heights_px"), cat(real, "sharpness"), s.height_bins_px)
    dist, used = profile_distance(prof_s, prof_r, s.min_bin_count)
    blur = {"profile_distance": dist, "bins_used": used, "unit": "log10(px^-2) decades",
            "sim_boxes": int(prof_s["n"].sum()), "real_boxes": int(prof_r["n"].sum())}
    profile = pd.DataFrame({
        "height_px": prof_s["height_px"], "height_lo_px": prof_s["height_lo_px"], "height_hi_px": prof_s["height_hi_px"],
        "sim_log10_sharpness": prof_s["median_log10_sharpness"], "real_log10_sharpness": prof_r["median_log10_sharpness"],
        "sim_n": prof_s["n"], "real_n": prof_r["n"]})
    # 2. colour
    hs = np.sum([x.lab_hist for x in sim], axis=0)
    hr = np.sum([x.lab_hist for x in real], axis=0)
    w1 = {f"w1_{n}": wasserstein_1d_hist(hs[c], hr[c], LAB_RANGES[c]) for c, n in enumerate(LAB_NAMES)}
    colour = {**w1, "w1_mean": float(np.mean(list(w1.values())))}
    # 3. spectrum and noise
    slopes_s = np.array([x.slope for x in sim]); slopes_r = np.array([x.slope for x in real])
    noise_s = np.array([x.noise_sigma for x in sim]); noise_r = np.array([x.noise_sigma for x in real])
    spectrum = {"slope_sim": float(slopes_s.mean()), "slope_real": float(slopes_r.mean()),
                "slope_abs_diff": float(abs(slopes_s.mean() - slopes_r.mean())),
                "noise_sigma_sim": float(noise_s.mean()), "noise_sigma_real": float(noise_r.mean()),
                "noise_sigma_abs_diff": float(abs(noise_s.mean() - noise_r.mean()))}
    edges = spectrum_bin_edges(s.spectrum_bins)
    freqs = np.sqrt(edges[:-1] * edges[1:])
    spec_curve = pd.DataFrame({"frequency_cpp": freqs,
                               "sim_log10_power": np.nanmean([x.log10_power for x in sim], axis=0),
                               "real_log10_power": np.nanmean([x.log10_power for x in real], axis=0)})
    spec_curve = spec_curve.dropna().reset_index(drop=True)
    # 4. features: KID / FID
    module, extractor, hw = load_feature_extractor(s.inception_weights, s.seed, s.thumb_hw)
    thumbs = [x.thumb if x.thumb.shape[:2] == tuple(hw) else cv2.resize(x.thumb, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
              for x in list(sim) + list(real)]
    feats = extract_features(module, thumbs)
    f_sim, f_real = feats[:len(sim)], feats[len(sim):]
    features = {"feature_extractor": extractor,
                **kid_fid(f_sim, f_real, subset_size=s.kid_subset_size, subsets=s.kid_subsets, seed=s.seed)}
    # 5. proxy A-distance on handcrafted + (standardised) extractor features
    hc_s = np.stack([x.handcrafted() for x in sim]); hc_r = np.stack([x.handcrafted() for x in real])
    pad_all = proxy_a_distance(np.hstack([hc_s, f_sim]), np.hstack([hc_r, f_real]), folds=s.pad_folds, seed=s.seed)
    pad_hc = proxy_a_distance(hc_s, hc_r, folds=s.pad_folds, seed=s.seed)
    pad = {**pad_all, "pad_handcrafted": pad_hc["pad"], "features": f"10 handcrafted + {f_sim.shape[1]} {extractor}"}
    result = {
        "n_sim_images": len(sim), "n_real_images": len(real),
        "blur_profile_distance": dist, "kid": features["kid"], "pad": pad_all["pad"],
        "colour_w1_lab": colour["w1_mean"], "spectrum_slope_abs_diff": spectrum["slope_abs_diff"],
        "noise_sigma_abs_diff": spectrum["noise_sigma_abs_diff"], "feature_extractor": extractor,
        "blur": blur, "colour": colour, "spectrum": spectrum, "features": features, "pad_detail": pad,
    }
    return result, {"blur_profile": profile, "spectrum": spec_curve}


# ----------------------------------------------------------------------------- plotting
def figure_to_rgb(fig) -> np.ndarray:
    """Render a matplotlib figure (Agg) to an RGB uint8 (H, W, 3) array and close it."""
    import matplotlib.pyplot as plt
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


def draw_blur_profile(ax, profile: pd.DataFrame, label: str, *, real: bool = True, color=None) -> None:
    """Draw a blur profile (``compare_domains`` curve) on a matplotlib axis: the variant's median
    log10 sharpness per box-height bin and, when ``real``, the real curve (black, dashed)."""
    ax.plot(profile["height_px"], profile["sim_log10_sharpness"], "o-", label=label, color=color)
    if real:
        ax.plot(profile["height_px"], profile["real_log10_sharpness"], "s--", color="black", label="real KITTI val")
    ax.set_xscale("log")
    ax.set_xlabel("box height [px] (near \u2192 right)")
    ax.set_ylabel("median log10 sharpness [px$^{-2}$]")
    ax.grid(True, which="both", alpha=0.3)


def plot_blur_profile(profile: pd.DataFrame, label: str) -> np.ndarray:
    """One variant's blur-vs-distance curve against real, as an RGB uint8 image (for trackers)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    draw_blur_profile(ax, profile, label)
    ax.legend(fontsize=8)
    ax.set_title(f"blur vs distance: {label}", fontsize=9)
    fig.tight_layout()
    return figure_to_rgb(fig)
