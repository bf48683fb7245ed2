"""Camera statistics that calibration matches between augmented synthetic and real frames.

Each function takes one RGB uint8 image (and its boxes with their distances) and returns small
arrays; :mod:`sim2real.calibrate.fit` pools them over frames. Sharpness and the spectrum come from
:mod:`sim2real.metrics.gap` (the gap report's own definitions), so calibration optimises exactly
what the gap stage reports.

1. **Sharpness vs distance**: :func:`sim2real.metrics.sharpness.box_sharpness` (noise-corrected,
   contrast-normalised gradient energy, px⁻²) binned by metric distance instead of box height:
   KITTI ``label_2``'s location z on the real side, the median vKITTI2 depth over the object's
   instance pixels on the synthetic side (:func:`box_distance_m`).
2. **Road luminance vs distance** (haze): :func:`road_luminance`, the lane ahead's median
   luminance per image row, with the row's ground distance from the camera geometry
   (:func:`row_distance_m`; vKITTI2's depth on the synthetic side). Koschmieder's law pulls it
   towards the airlight as exp(−β·z), and the road is one material in every frame, so the
   profile carries β with little dependence on scene content (cf. Hautière et al. 2006).
   Also reported: **contrast vs distance**, :func:`box_log_contrast`, the noise-corrected log standard
   deviation of luminance inside the central part of each box. Koschmieder's law scales an
   object's contrast by t = exp(−β·d), so log contrast falls linearly with distance at slope −β;
   colour gains and tone multiply contrast at every distance alike (a constant offset).
3. **Noise level per intensity**: :func:`flat_patch_noise` and :func:`fit_poisson_gaussian`,
   the Poisson–Gaussian model var(y) = a·y + b fitted on flat patches (Foi et al. 2008).
4. **Spectrum slope**: :func:`sim2real.metrics.spectrum.radial_power_spectrum` / ``spectrum_slope``.
5. **Lab colour distribution**: :func:`lab_pixels`, CIE Lab values of a fixed pixel subsample,
   of the whole image and of the lane ahead (:func:`lane_mask`, the road haze's region).
6. **JPEG quality**: :func:`estimate_jpeg_quality`, from the quantiser steps that a decoded JPEG
   leaves in its 8×8 block DCT coefficients (Fan & de Queiroz 2003); None for an image that was
   never lossily compressed (KITTI's PNGs).
7. **Blur per box**: :func:`box_blur_px`, the re-blur ratio of the gap report's sharpness
   turned into an effective Gaussian σ (Crété-Roffet et al. 2007): far less dependent on what a
   box shows than the sharpness itself. Calibration reads it on :func:`central_boxes`: a whole
   box's margins hold background at other depths, whose share differs between the two worlds
   (docs/calibration.md has the measurement).
8. **Airlight**: :func:`observed_airlight`, the dark-channel estimate (He et al. 2009) pooled
   over frames, as the camera delivered it.

References
----------
Foi, A., Trimeche, M., Katkovnik, V., Egiazarian, K., "Practical Poissonian-Gaussian noise
modeling and fitting for single-image raw-data", IEEE TIP 17(10), 2008 (wavelet-detail noise
samples on smooth level sets, then a fit of var = a·y + b over intensity).
Koschmieder, H., "Theorie der horizontalen Sichtweite", Beitr. Phys. freien Atm. 12, 1924.
Hautière, N., Tarel, J.-P., Lavenant, J., Aubert, D., "Automatic fog detection and estimation of
visibility distance through use of an onboard camera", Machine Vision and Applications 17(1), 2006
(visibility from the road's luminance profile along the image rows).
Lawson, C. L., Hanson, R. J., "Solving Least Squares Problems", Prentice-Hall 1974
(non-negative least squares, ``scipy.optimize.nnls``).
Fan, Z., de Queiroz, R. L., "Identification of bitmap compression history: JPEG detection and
quantizer estimation", IEEE TIP 12(2), 2003.
ITU-T T.81 / ISO 10918-1 (JPEG), Annex K.1 (the example luminance quantisation table) and the
Independent JPEG Group's quality scaling (libjpeg ``jpeg_quality_scaling``), which OpenCV uses.
He, K., Sun, J., Tang, X., "Single image haze removal using dark channel prior", CVPR 2009.
Crété-Roffet, F., Dolmiere, T., Ladret, P., Nicolas, M., "The blur effect: perception and
estimation with a new no-reference perceptual blur metric", SPIE Human Vision and Electronic
Imaging XII, 2007 (re-blurring an image changes a sharp one more than a blurred one).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sim2real.metrics.sharpness import box_sharpness, luminance
from sim2real.metrics.spectrum import radial_power_spectrum, spectrum_slope
from sim2real.physics.haze import estimate_airlight


# ----------------------------------------------------------------------------- distances and binning
def box_distance_m(depth_m: np.ndarray, instance: np.ndarray | None, track_ids, boxes_xyxy) -> np.ndarray:
    """Median depth (m) over each object's instance pixels (value trackID + 1) inside its box;
    the box's median finite depth when the mask has no pixel there (or without masks). (N,) float64,
    NaN when the box holds no finite depth."""
    out = np.full(len(track_ids), np.nan)
    h, w = depth_m.shape
    for i, (tid, box) in enumerate(zip(track_ids, np.asarray(boxes_xyxy).reshape(-1, 4))):
        l, t = max(int(box[0]), 0), max(int(box[1]), 0)
        r, b = min(int(np.ceil(box[2])) + 1, w), min(int(np.ceil(box[3])) + 1, h)
        d = depth_m[t:b, l:r]
        if instance is not None:
            m = instance[t:b, l:r] == int(tid) + 1
            if m.any():
                d = d[m]
        d = d[np.isfinite(d)]
        if d.size:
            out[i] = float(np.median(d))
    return out


def binned_median(distance_m: np.ndarray, values: np.ndarray, edges_m) -> tuple[np.ndarray, np.ndarray]:
    """(median of finite ``values`` per distance bin (NaN when empty), count per bin).

    Bin k holds ``edges[k] <= d < edges[k+1]``.
    """
    d, v = np.asarray(distance_m, np.float64), np.asarray(values, np.float64)
    ok = np.isfinite(d) & np.isfinite(v)
    d, v = d[ok], v[ok]
    idx = np.digitize(d, np.asarray(edges_m, np.float64)) - 1
    n_bins = len(edges_m) - 1
    med = np.full(n_bins, np.nan)
    cnt = np.zeros(n_bins, np.int64)
    for k in range(n_bins):
        sel = v[idx == k]
        cnt[k] = sel.size
        if sel.size:
            med[k] = float(np.median(sel))
    return med, cnt


# ----------------------------------------------------------------------------- contrast (haze)
def central_boxes(boxes_xyxy, inner: float) -> np.ndarray:
    """The central ``inner`` fraction (per side) of each box, same centre: (N, 4) float64 xyxy.
    A box's margins hold background at other depths; its centre holds mostly the object."""
    b = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    if not 0 < inner <= 1:
        raise ValueError(f"inner fraction must be in (0, 1], got {inner}")
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    hw, hh = (b[:, 2] - b[:, 0]) * inner / 2, (b[:, 3] - b[:, 1]) * inner / 2
    return np.stack([cx - hw, cy - hh, cx + hw, cy + hh], 1)


def box_log_contrast(gray: np.ndarray, boxes_xyxy, noise_sigma_gray: float, inner: float = 0.5,
                     min_size_px: int = 6) -> np.ndarray:
    """Natural log of the noise-corrected luminance std inside the central ``inner`` fraction
    (per side) of each box (:func:`central_boxes`): 0.5·ln(max(var − σn², 1e-6)). (N,) float64;
    NaN for boxes whose central part is narrower or shorter than ``min_size_px``."""
    boxes = central_boxes(boxes_xyxy, inner)
    out = np.full(len(boxes), np.nan)
    h, w = gray.shape
    nv = float(noise_sigma_gray) ** 2
    for i, (l, t, r, b) in enumerate(boxes):
        x0, x1 = max(int(round(l)), 0), min(int(round(r)), w)
        y0, y1 = max(int(round(t)), 0), min(int(round(b)), h)
        if x1 - x0 < min_size_px or y1 - y0 < min_size_px:
            continue
        out[i] = 0.5 * np.log(max(float(gray[y0:y1, x0:x1].var()) - nv, 1e-6))
    return out


def row_distance_m(height: int, fy: float, cy: float, camera_height_m: float) -> np.ndarray:
    """Distance (m) to the flat ground seen by each image row, z = fy·h / (v + ½ − cy); NaN at and
    above the horizon (v + ½ <= cy). (H,) float64."""
    dv = np.arange(height, dtype=np.float64) + 0.5 - cy
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(dv > 0.5, fy * camera_height_m / dv, np.nan)


def lane_mask(shape: tuple[int, int], row_dist_m: np.ndarray, fx: float, cx: float, exclude: np.ndarray | None = None,
              half_width_m: float = 2.0) -> np.ndarray:
    """(H, W) bool: the lane straight ahead, the pixels within ``half_width_m`` of the optical
    axis at each row's ground distance (|u − cx| <= fx·w / z), leaving out ``exclude`` (H, W)
    bool pixels (vehicles). Rows without ground (NaN distance) have none."""
    h, w = shape
    m = np.zeros((h, w), bool)
    for v in np.flatnonzero(np.isfinite(row_dist_m)):
        half = fx * half_width_m / row_dist_m[v]
        m[v, max(int(round(cx - half)), 0):min(int(round(cx + half)) + 1, w)] = True
    return m if exclude is None else m & ~exclude


def road_luminance(gray: np.ndarray, row_dist_m: np.ndarray, fx: float, cx: float, exclude: np.ndarray | None = None,
                   half_width_m: float = 2.0, min_px: int = 3) -> np.ndarray:
    """Median luminance of the lane straight ahead per image row (:func:`lane_mask`). (H,) float64,
    NaN for rows without ground or with fewer than ``min_px`` pixels. Koschmieder's law acts on
    this profile directly: the road's luminance approaches the airlight as exp(−β·z)."""
    out = np.full(gray.shape[0], np.nan)
    lane = lane_mask(gray.shape, row_dist_m, fx, cx, exclude, half_width_m)
    for v in np.flatnonzero(lane.sum(axis=1) >= min_px):
        out[v] = float(np.median(gray[v][lane[v]]))
    return out


def box_mask(shape: tuple[int, int], boxes_xyxy) -> np.ndarray:
    """(H, W) bool: inside any of the boxes."""
    m = np.zeros(shape, bool)
    for l, t, r, b in np.asarray(boxes_xyxy, np.float64).reshape(-1, 4):
        m[max(int(t), 0):int(np.ceil(b)) + 1, max(int(l), 0):int(np.ceil(r)) + 1] = True
    return m


# ----------------------------------------------------------------------------- noise (Foi et al.)
def flat_patch_noise(rgb: np.ndarray, block_px: int = 16, max_texture_ratio: float = 1.5,
                     clip_margin: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Noise samples on flat patches: (level, variance) per flat block and channel, float64 arrays.

    Per channel, the image is cut into 2×2 cells; the Haar diagonal detail d = (a − b − c + d)/2
    of a cell has variance σ² under white noise and is nearly blind to smooth shading, the
    horizontal and vertical details respond to edges as well. A ``block_px`` block is *flat* when
    the mean squared horizontal/vertical detail is at most ``max_texture_ratio`` times the mean
    squared diagonal one (pure noise: ratio 1) and no pixel is within ``clip_margin`` of 0 or 255
    (clipping hides noise); its sample is (mean level in gray levels, mean d²). A simplified
    form of Foi et al.'s smoothness-masked wavelet samples (their ML fit is replaced by
    :func:`fit_poisson_gaussian`'s binned weighted least squares).
    """
    img = np.asarray(rgb, np.float32)
    hb, wb = img.shape[0] // block_px, img.shape[1] // block_px
    img = img[:hb * block_px, :wb * block_px]
    a, b = img[0::2, 0::2], img[0::2, 1::2]
    c, d = img[1::2, 0::2], img[1::2, 1::2]
    diag2 = ((a - b - c + d) * 0.5) ** 2
    hv2 = (((a + b - c - d) * 0.5) ** 2 + ((a - b + c - d) * 0.5) ** 2) * 0.5
    cells = block_px // 2

    def per_block(x: np.ndarray) -> np.ndarray:  # (hb*cells, wb*cells, 3) -> (hb, wb, 3) block means
        return x.reshape(hb, cells, wb, cells, 3).mean(axis=(1, 3))

    level = img.reshape(hb, block_px, wb, block_px, 3).mean(axis=(1, 3))
    lo = img.reshape(hb, block_px, wb, block_px, 3).min(axis=(1, 3))
    hi = img.reshape(hb, block_px, wb, block_px, 3).max(axis=(1, 3))
    var_d, var_hv = per_block(diag2), per_block(hv2)
    flat = (var_hv <= max_texture_ratio * var_d + 0.05) & (lo >= clip_margin) & (hi <= 255 - clip_margin)
    return level[flat].astype(np.float64), var_d[flat].astype(np.float64)


@dataclass(frozen=True)
class NoiseFit:
    """var(y) = shot·y + read² (gray levels², y in gray levels 0–255) with its binned data."""

    shot: float
    read_sigma: float
    levels: np.ndarray
    variances: np.ndarray
    counts: np.ndarray

    def sigma_at(self, level: float) -> float:
        return float(np.sqrt(max(self.shot * level + self.read_sigma ** 2, 0.0)))


def fit_poisson_gaussian(levels: np.ndarray, variances: np.ndarray, n_bins: int = 16,
                         min_count: int = 8) -> NoiseFit:
    """Fit var = a·y + b (a, b >= 0) to flat-patch samples: per intensity bin (``n_bins`` equal
    bins over 0–255) the median sample variance, then weighted non-negative least squares
    (``scipy.optimize.nnls``, weights √count) over bins with >= ``min_count`` samples.
    The median is robust to patches with residual texture. Raises ValueError without 2 bins."""
    from scipy.optimize import nnls

    edges = np.linspace(0, 256, n_bins + 1)
    idx = np.clip(np.digitize(levels, edges) - 1, 0, n_bins - 1)
    lv, vv, cc = [], [], []
    for k in range(n_bins):
        sel = idx == k
        if sel.sum() >= min_count:
            lv.append(float(np.median(levels[sel])))
            vv.append(float(np.median(variances[sel])))
            cc.append(int(sel.sum()))
    if len(lv) < 2:
        raise ValueError(f"too few flat patches for a noise fit ({len(levels)} samples, "
                         f"{len(lv)} intensity bins with >= {min_count})")
    lv, vv, cc = np.array(lv), np.array(vv), np.array(cc)
    wgt = np.sqrt(cc)
    (a, b), _ = nnls(np.stack([lv, np.ones_like(lv)], 1) * wgt[:, None], vv * wgt)
    return NoiseFit(float(a), float(np.sqrt(b)), lv, vv, cc)


# ----------------------------------------------------------------------------- blur per box
def box_blur_px(rgb: np.ndarray, boxes_xyxy, reblur_px: float = 2.0, denoise_sigma_px: float = 1.0,
                min_size_px: int = 8) -> np.ndarray:
    """Effective Gaussian blur σ (px) inside each box from the re-blur ratio of its sharpness.

    For edges blurred by σ, the gradient energy over the variance (:func:`box_sharpness`) falls as
    1/σ, so re-blurring by s multiplies it by ρ = σ/√(σ² + s²), whatever the edge density;
    σ = s·ρ/√(1 − ρ²). The value includes the renderer's own softness (about 0.5–1 px); it is
    compared between image sets, never read as an absolute. (N,) float64, NaN where the sharpness
    is undefined. The 1 px pre-filter (``denoise_sigma_px``) keeps residual sensor noise (which
    lossy compression leaves partly unseen by the noise correction) from reading as sharpness.
    """
    a = box_sharpness(rgb, boxes_xyxy, denoise_sigma_px=denoise_sigma_px, min_size_px=min_size_px)
    # after the re-blur, white noise keeps about 1/(2·sqrt(pi)·s) of its std: no correction needed
    b = box_sharpness(cv2.GaussianBlur(rgb, (0, 0), reblur_px), boxes_xyxy, denoise_sigma_px=denoise_sigma_px,
                      noise_sigma_gray=0.0, min_size_px=min_size_px)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.clip(b / a, 1e-6, 0.999)
    return reblur_px * rho / np.sqrt(1.0 - rho ** 2)


# ----------------------------------------------------------------------------- JPEG quality
IJG_LUMA = np.array([[16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
                     [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
                     [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
                     [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], np.float64)
_PROBE = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (1, 2), (2, 1), (2, 2), (0, 3), (3, 0))


def ijg_table(quality: int) -> np.ndarray:
    """The luminance quantisation steps libjpeg (and OpenCV) use at ``quality`` 1–100."""
    q = min(max(int(quality), 1), 100)
    scale = 5000.0 / q if q < 50 else 200.0 - 2.0 * q
    return np.clip(np.floor((IJG_LUMA * scale + 50.0) / 100.0), 1, 255)


def _dct_matrix() -> np.ndarray:
    k, n = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    d = np.sqrt(2 / 8) * np.cos((2 * n + 1) * k * np.pi / 16)
    d[0] /= np.sqrt(2)
    return d


def quantiser_steps(rgb: np.ndarray, min_coefficients: int = 50, threshold: float = 0.6) -> np.ndarray:
    """Estimated luminance quantiser step of each probed DCT coefficient, (len(_PROBE),) float
    (1 = no quantisation seen). Per coefficient the largest step Q in 2..64 whose lattice the
    non-zero coefficients sit on: mean cos(2π c/Q) over |c| >= Q/2 above ``threshold``."""
    y = luminance(rgb).astype(np.float64)  # JFIF Y = the BT.601 luma
    h8, w8 = y.shape[0] // 8 * 8, y.shape[1] // 8 * 8
    blocks = (y[:h8, :w8] - 128.0).reshape(h8 // 8, 8, w8 // 8, 8).transpose(0, 2, 1, 3)
    d = _dct_matrix()
    coef = d @ blocks @ d.T
    steps = np.ones(len(_PROBE))
    for i, (u, v) in enumerate(_PROBE):
        c = coef[..., u, v].ravel()
        for q in range(64, 1, -1):
            sel = c[np.abs(c) >= q / 2]
            if sel.size >= min_coefficients and float(np.mean(np.cos(2 * np.pi * sel / q))) > threshold:
                steps[i] = q
                break
    return steps


def estimate_jpeg_quality(images: list[np.ndarray]) -> int | None:
    """The IJG quality (1–100) whose luminance table best fits the quantiser steps pooled over
    ``images`` (median step per coefficient), or None when no quantisation is seen (steps of 1:
    never compressed, or quality >= about 97)."""
    steps = np.median(np.stack([quantiser_steps(img) for img in images]), axis=0)
    if np.all(steps <= 1):
        return None
    probe = tuple(zip(*_PROBE))
    err = [float(np.sum(np.abs(np.log(ijg_table(q)[probe]) - np.log(steps)))) for q in range(1, 101)]
    return int(np.argmin(err)) + 1


# ----------------------------------------------------------------------------- colour, spectrum
def observed_airlight(images) -> np.ndarray:
    """The airlight as the images show it (after their camera), (3,) float64 RGB: the median over
    images of the dark-channel estimate (He et al. 2009, :func:`sim2real.physics.haze.estimate_airlight`
    without depth, colour kept). The same estimator on every image set, so sets compare."""
    return np.median(np.stack([estimate_airlight(img, None, neutral=False) for img in images]), axis=0).astype(np.float64)


def lab_pixels(rgb: np.ndarray, stride: int = 8, mask: np.ndarray | None = None) -> np.ndarray:
    """CIE Lab (L 0–100, a/b) of every ``stride``-th pixel in each direction, only where ``mask``
    (H, W) bool is set when given: (M, 3) float32."""
    sub = np.ascontiguousarray(rgb[::stride, ::stride])
    lab = cv2.cvtColor(sub.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab).reshape(-1, 3)
    return lab if mask is None else lab[mask[::stride, ::stride].reshape(-1)]


def slope_of(gray: np.ndarray, n_bins: int = 24) -> float:
    """Radially averaged power-spectrum slope (the gap report's definition)."""
    f, p = radial_power_spectrum(gray, n_bins=n_bins)
    return spectrum_slope(f, p)


__all__ = ["row_distance_m", "lane_mask", "road_luminance", "box_mask", "box_distance_m", "binned_median", "central_boxes", "box_log_contrast", "flat_patch_noise", "fit_poisson_gaussian",
           "NoiseFit", "lab_pixels", "observed_airlight", "slope_of", "luminance", "box_blur_px", "estimate_jpeg_quality", "ijg_table"]
