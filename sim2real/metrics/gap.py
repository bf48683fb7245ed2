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

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np
import pandas as pd
from skimage.restoration import estimate_sigma

from sim2real.metrics.colour import LAB_NAMES, LAB_RANGES, wasserstein_1d_hist
from sim2real.metrics.features import extract_features, kid_fid, load_feature_extractor
from sim2real.metrics.pad import proxy_a_distance
from sim2real.metrics.sharpness import _box_sharpness_gray, blur_profile, check_rgb, luminance, profile_distance
from sim2real.metrics.spectrum import radial_power_spectrum, spectrum_bin_edges, spectrum_slope



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
    check_rgb(rgb, image_id or "<image>")
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
        kid, pad = gap["kid"], gap["pad"]
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
