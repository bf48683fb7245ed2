"""Fit the realism parameters (blur, haze, noise, JPEG, colour) so that augmented synthetic frames
have the statistics of real ones.

The forward model is the depth_blur stage itself (:func:`sim2real.physics.frame.render` and the
final JPEG write), run on a seeded subsample of the synthetic frames; each step changes one group
of parameters with the others held at their current values, in an order where each statistic is
nearly blind to what is fitted later (see :mod:`sim2real.calibrate.stats`):

1. **JPEG quality** (closed form, :func:`sim2real.calibrate.stats.estimate_jpeg_quality`): the
   quantiser steps a decoded JPEG leaves in its block DCT coefficients; kept as in params when
   the real frames show none (KITTI's PNGs were never lossily compressed).
2. **Noise** (:func:`fit_noise`): the *shape* shot_gain/read_sigma² in closed form from the real
   frames' Poisson–Gaussian fit on flat patches (Foi et al. 2008), the scale by a root find
   (``scipy.optimize.brentq``) on the luminance noise σ (the gap report's ``estimate_sigma``)
   through the forward model, because lossy compression erases noise in flat regions in a way
   no closed form inverts.
3. **Haze** (:func:`fit_haze`): the visibility that makes the lane's luminance vs distance
   approach the airlight like the real one (up to an affine map: gains, tone and the airlight's
   level act on every distance alike), a 1-D grid plus ``scipy.optimize.minimize_scalar``
   (bounded) in log visibility.
4. **Colour** (:func:`fit_colour`): white-balance gains, exposure, tone γ and contrast minimising the summed
   1-D Wasserstein distances of the CIE L, a, b pixel distributions (``scipy.stats``), over all
   sampled pixels and over the lane ahead (the road: one material in every frame), from the
   gray-world closed form (ratio of linear-light channel means), by Nelder–Mead. With haze on,
   the airlight follows in closed form: the real frames' dark-channel airlight
   (:func:`sim2real.calibrate.stats.observed_airlight`) mapped back through each candidate camera.
5. **Blur** (:func:`fit_blur`): per distance bin, the uniform Gaussian σ at which the synthetic
   boxes' median effective blur (:func:`sim2real.calibrate.stats.box_blur_px` on the central
   part of each box, the re-blur ratio of the gap report's sharpness) equals the real one
   (interpolated on a σ grid), then the physics
   curve σ(z) = sigma·clip((z − near)/(far − near), 0, 1) through those points by weighted least
   squares (``scipy.optimize.least_squares``). Fitted after colour and noise, which change how
   much of a box's gradient energy is noise.
6. **Noise** again, now measured after the fitted blur and colour.

Why scipy.optimize: every step is 1–5 dimensional, smooth enough for a grid plus a bounded local
search, and deterministic; Optuna or nevergrad earn their keep on expensive, high-dimensional or
noisy black boxes, and would add a dependency and seeds of their own.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np

from sim2real.calibrate.stats import (binned_median, box_blur_px, box_log_contrast, box_mask, central_boxes,
                                      estimate_jpeg_quality, fit_poisson_gaussian, flat_patch_noise, lab_pixels,
                                      lane_mask, luminance, observed_airlight, road_luminance, row_distance_m, slope_of)
from sim2real.formats.images import encode_jpeg_roundtrip
from sim2real.metrics.sharpness import box_sharpness
from sim2real.metrics.spectrum import noise_sigma
from sim2real.physics.camera import sensor_noise_u8
from sim2real.physics.colour import colour_u8, invert_colour, srgb_to_linear
from sim2real.physics.frame import DEFAULT_JPEG_QUALITY, haze_enabled, render, sample_values
from sim2real.physics.haze import koschmieder_u8, resolve_airlight, transmission

GROUPS = ("jpeg", "noise", "haze", "colour", "blur")


@dataclass
class SimFrame:
    """One synthetic frame with what the forward model needs (boxes xyxy px, distances m)."""

    frame_id: str
    image: np.ndarray
    depth_m: np.ndarray
    instance: np.ndarray | None
    intrinsics: tuple[float, float, float, float]
    boxes: np.ndarray
    distance_m: np.ndarray

    def row_distance_m(self) -> np.ndarray:
        """Per image row, the median depth of the non-vehicle pixels in the 5 columns around cx
        (the ground straight ahead); NaN where there is none (sky)."""
        cx = int(self.intrinsics[2])
        d = self.depth_m[:, max(cx - 2, 0):cx + 3].astype(np.float64)
        keep = np.isfinite(d) if self.instance is None else np.isfinite(d) & (self.instance[:, max(cx - 2, 0):cx + 3] == 0)
        d = np.where(keep, d, np.nan)
        out = np.full(d.shape[0], np.nan)
        ok = keep.any(axis=1)
        out[ok] = np.nanmedian(d[ok], axis=1)
        return out

    def vehicles(self) -> np.ndarray:
        """(H, W) bool vehicle pixels (instance map), else the boxes."""
        return self.instance > 0 if self.instance is not None else box_mask(self.depth_m.shape, self.boxes)


@dataclass
class RealFrame:
    """One real frame with its labelled boxes (xyxy px) and their distances (label_2 z, m), and
    its camera (fx, fy, cx, cy) from calib P2 for the ground distance of each row."""

    image_id: str
    image: np.ndarray
    boxes: np.ndarray
    distance_m: np.ndarray
    intrinsics: tuple[float, float, float, float] | None = None


@dataclass
class Settings:
    """The ``calibrate`` params section with gap's ``denoise_sigma_px``/``min_box_px`` and ``seed``
    (built by :func:`sim2real.params.build`)."""

    distance_bins_m: Sequence[float] = (0, 10, 15, 20, 30, 40, 55, 75, 100, 150)
    min_bin_count: int = 3
    fit: Sequence[str] = GROUPS
    blur_grid_px: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
    visibility_grid_m: Sequence[float] = (100, 150, 220, 330, 500, 750, 1100, 1600, 2400, 3600, 5400)
    reblur_px: float = 2.0
    blur_denoise_px: float = 1.0
    blur_inner: float = 0.6
    min_box_height_px: float = 18.0
    max_noise_sigma: float = 12.0
    camera_height_m: float = 1.65
    denoise_sigma_px: float = 0.5
    min_box_px: int = 8
    lab_stride: int = 16
    seed: int = 0


# ----------------------------------------------------------------------------- forward model
def with_values(params: dict, **sections) -> dict:
    """A deep copy of ``params`` with ``{section: {key: value}}`` overrides applied."""
    out = copy.deepcopy(params)
    for sec, kv in sections.items():
        out.setdefault(sec, {})
        out[sec] = {**(out[sec] or {}), **kv}
    return out


def _values(params: dict, frame: SimFrame, seed: int) -> dict:
    return sample_values(params, seed, frame.frame_id)


def _render_all(sim: list[SimFrame], params: dict, seed: int) -> list[np.ndarray]:
    """Every frame rendered with ``params`` (values drawn from these params), before the JPEG write."""
    return [render(f.image, f.depth_m, f.instance, f.intrinsics, params, _values(params, f, seed), name=f.frame_id)[0]
            for f in sim]


def forward(frame: SimFrame, params: dict, seed: int) -> np.ndarray:
    """The depth_blur stage's output pixels for ``frame``: render, then the JPEG write."""
    v = _values(params, frame, seed)
    img = render(frame.image, frame.depth_m, frame.instance, frame.intrinsics, params, v, name=frame.frame_id)[0]
    q = v.get("camera_jpeg_quality")
    return encode_jpeg_roundtrip(img, DEFAULT_JPEG_QUALITY if q is None else int(q))


def finish(img: np.ndarray, shot: float, read: float, quality: int | None, rng_seed: int) -> np.ndarray:
    """Noise then JPEG: the last two steps of the forward model (quality >= 100 or None: 95)."""
    if shot > 0 or read > 0:
        img = sensor_noise_u8(img, np.random.default_rng(rng_seed), shot, read)
    return encode_jpeg_roundtrip(img, DEFAULT_JPEG_QUALITY if quality is None else min(int(quality), 100))


def _quiet(params: dict) -> dict:
    """params without noise and with JPEG left to :func:`finish`."""
    return with_values(params, camera={"shot_gain": 0.0, "read_sigma": 0.0})


def _cam(params: dict) -> tuple[float, float, int | None]:
    cam = params.get("camera") or {}
    mid = lambda v: None if v is None else (float(np.mean(v)) if isinstance(v, (list, tuple)) else float(v))  # noqa: E731
    q = mid(cam.get("jpeg_quality"))
    return mid(cam.get("shot_gain")) or 0.0, mid(cam.get("read_sigma")) or 0.0, None if q is None else int(round(q))


# ----------------------------------------------------------------------------- statistics of image sets
@dataclass
class Profile:
    """A statistic's median per distance bin with the bin counts."""

    median: np.ndarray
    count: np.ndarray
    distance_m: np.ndarray

    def as_dict(self) -> dict:
        f = lambda a: [None if not np.isfinite(x) else round(float(x), 5) for x in a]  # noqa: E731
        return {"median": f(self.median), "count": [int(c) for c in self.count], "distance_m": f(self.distance_m)}


def _profile(distances: list[np.ndarray], values: list[np.ndarray], edges) -> Profile:
    d = np.concatenate(distances) if distances else np.zeros(0)
    v = np.concatenate(values) if values else np.zeros(0)
    med, cnt = binned_median(d, v, edges)
    dist, _ = binned_median(d, d, edges)
    return Profile(med, cnt, dist)


def sharpness_values(img: np.ndarray, boxes: np.ndarray, s: Settings) -> np.ndarray:
    """log10 box sharpness (the gap report's :func:`box_sharpness`), NaN where undefined."""
    sh = box_sharpness(img, boxes, denoise_sigma_px=s.denoise_sigma_px, min_size_px=s.min_box_px)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sh > 0, np.log10(sh), np.nan)


def blur_values(img: np.ndarray, boxes: np.ndarray, s: Settings) -> np.ndarray:
    """Effective blur σ (px) per box (:func:`box_blur_px`) over the central ``s.blur_inner`` of each
    box (:func:`central_boxes`): the margins hold background at other depths (blurred by another
    σ, or flat sky), which would pull every distance bin towards the scene's average blur."""
    return box_blur_px(img, central_boxes(boxes, s.blur_inner), s.reblur_px, s.blur_denoise_px, s.min_box_px)


def contrast_values(img: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """log contrast per box (no noise correction: both sides carry their noise, the forward model
    the fitted one)."""
    return box_log_contrast(luminance(img), boxes, 0.0)


@dataclass
class Stats:
    """Every calibration statistic of one image set."""

    sharpness: Profile
    blur: Profile
    contrast: Profile
    road: Profile
    noise_sigma: float
    slope: float
    noise_fit: dict
    lab: np.ndarray
    airlight: np.ndarray | None = None
    road_lab: np.ndarray | None = None

    def summary(self) -> dict:
        return {"sharpness_vs_distance": self.sharpness.as_dict(), "blur_vs_distance": self.blur.as_dict(),
                "contrast_vs_distance": self.contrast.as_dict(), "road_luminance_vs_distance": self.road.as_dict(),
                "noise_sigma_gray": round(self.noise_sigma, 5),
                "spectrum_slope": round(self.slope, 5), "noise_per_intensity": self.noise_fit,
                "lab_mean": [round(float(x), 4) for x in self.lab.mean(0)],
                "lab_std": [round(float(x), 4) for x in self.lab.std(0)],
                "airlight_rgb": None if self.airlight is None else [round(float(x), 3) for x in self.airlight]}


def road_profile(images: Sequence[np.ndarray], rows, s: Settings) -> Profile:
    """Median lane luminance per distance bin (:func:`road_luminance`), pooled over images;
    ``rows`` = (row distances, (fx, cx), vehicle masks) per image (:func:`sim_rows`, :func:`real_rows`)."""
    vals = [road_luminance(luminance(img), r, fx, cx, m) for img, r, (fx, cx), m in zip(images, *rows)]
    return _profile(list(rows[0]), vals, s.distance_bins_m)


def sim_rows(sim: Sequence[SimFrame]) -> tuple[list, list, list]:
    return [f.row_distance_m() for f in sim], [(f.intrinsics[0], f.intrinsics[2]) for f in sim], [f.vehicles() for f in sim]


def real_rows(real: Sequence[RealFrame], s: Settings) -> tuple[list, list, list]:
    """Ground distance per row from calib P2 and ``camera_height_m``; labelled boxes left out."""
    rows, fc, masks = [], [], []
    for r in real:
        h, w = r.image.shape[:2]
        fx, fy, cx, cy = r.intrinsics if r.intrinsics is not None else (721.5377, 721.5377, w / 2.0, h / 2.0)
        rows.append(row_distance_m(h, fy, cy, s.camera_height_m))
        fc.append((fx, cx))
        masks.append(box_mask((h, w), r.boxes))
    return rows, fc, masks


def image_set_stats(images: Sequence[np.ndarray], boxes: Sequence[np.ndarray], distances: Sequence[np.ndarray],
                    s: Settings, rows=None) -> Stats:
    sh, bl, co, nz, sl, lv, vv, lab = [], [], [], [], [], [], [], []
    road = road_profile(images, rows, s) if rows is not None else Profile(*(np.zeros(0),) * 3)
    road_lab = []
    if rows is not None:
        for img, r, (fx, cx), m in zip(images, *rows):
            road_lab.append(lab_pixels(img, s.lab_stride, lane_mask(img.shape[:2], r, fx, cx, m)))
    for img, bx in zip(images, boxes):
        sh.append(sharpness_values(img, bx, s))
        bl.append(blur_values(img, bx, s))
        co.append(contrast_values(img, bx))
        nz.append(noise_sigma(img))
        sl.append(slope_of(luminance(img)))
        l_, v_ = flat_patch_noise(img)
        lv.append(l_)
        vv.append(v_)
        lab.append(lab_pixels(img, s.lab_stride))
    try:
        nf = fit_poisson_gaussian(np.concatenate(lv), np.concatenate(vv))
        noise_fit = {"shot_gain": round(nf.shot, 6), "read_sigma": round(nf.read_sigma, 5),
                     "levels": [round(float(x), 3) for x in nf.levels],
                     "variances": [round(float(x), 5) for x in nf.variances], "counts": [int(c) for c in nf.counts]}
    except ValueError as exc:
        noise_fit = {"error": str(exc)}
    dist = list(distances)
    return Stats(_profile(dist, sh, s.distance_bins_m), _profile(dist, bl, s.distance_bins_m),
                 _profile(dist, co, s.distance_bins_m), road, float(np.mean(nz)), float(np.mean(sl)), noise_fit,
                 np.concatenate(lab), observed_airlight(images), np.concatenate(road_lab) if road_lab else None)


def profile_distance(a: Profile, b: Profile, min_count: int, offset_free: bool = False) -> float:
    """Count-weighted mean |Δ median| over bins with >= ``min_count`` on both sides (NaN if none);
    ``offset_free`` removes the weighted mean difference first (for contrast under gains/tone)."""
    use = (a.count >= min_count) & (b.count >= min_count) & np.isfinite(a.median) & np.isfinite(b.median)
    if not use.any():
        return math.nan
    d = a.median[use] - b.median[use]
    w = np.minimum(a.count[use], b.count[use]).astype(np.float64)
    if offset_free:
        d = d - np.sum(w * d) / np.sum(w)
    return float(np.sum(w * np.abs(d)) / np.sum(w))


# ----------------------------------------------------------------------------- fit steps
@dataclass
class StepResult:
    """One fitted group: new values, the objective curve (parameter value, objective) and notes."""

    values: dict
    curve: list = field(default_factory=list)
    note: str = ""


def _grid_then_bounded(fun: Callable[[float], float], grid: Sequence[float]) -> tuple[float, list]:
    """Evaluate ``fun`` on ``grid`` (increasing), then refine inside the best cell's neighbours
    with ``scipy.optimize.minimize_scalar`` (bounded). Returns (argmin, [(x, f), ...] sorted)."""
    from scipy.optimize import minimize_scalar

    curve = [(float(x), float(fun(float(x)))) for x in grid]
    k = int(np.nanargmin([f for _, f in curve]))  # callers make sure one value is finite
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    best_x, best_f = curve[k]
    if hi > lo:
        res = minimize_scalar(fun, bounds=(lo, hi), method="bounded", options={"xatol": (hi - lo) * 1e-3, "maxiter": 12})
        curve.append((float(res.x), float(res.fun)))
        if res.fun < best_f:
            best_x, best_f = float(res.x), float(res.fun)
    return best_x, sorted(curve)


def fit_jpeg(real: list[RealFrame]) -> StepResult:
    """JPEG quality of the real frames from their quantiser steps (closed form); nothing when none."""
    q = estimate_jpeg_quality([r.image for r in real])
    if q is None:
        return StepResult({}, [], "no JPEG quantisation in the real frames: camera.jpeg_quality kept")
    return StepResult({"camera": {"jpeg_quality": int(q)}}, [], "IJG quality whose luminance table fits the "
                      "quantiser steps of the real frames' block DCT coefficients")


def fit_noise(sim: list[SimFrame], real: Stats, params: dict, s: Settings) -> StepResult:
    """Noise (shot, read) = scale x shape: shape from the real Poisson–Gaussian fit (closed form),
    scale by ``brentq`` so the forward model's mean luminance noise σ equals the real one."""
    from scipy.optimize import brentq

    _, _, q = _cam(params)
    base = _render_all(sim, _quiet(params), s.seed)
    nf = real.noise_fit
    shot0, read0 = (nf.get("shot_gain", 0.0), nf.get("read_sigma", 1.0)) if "error" not in nf else (0.0, 1.0)
    # unit shape: read_sigma 1 at scale 1; shot keeps its ratio to read² (flat-patch closed form)
    ratio = shot0 / read0 ** 2 if read0 > 1e-3 else 0.0
    curve = []

    def measured(scale: float) -> float:
        val = float(np.mean([noise_sigma(finish(img, ratio * scale ** 2, scale, q, i)) for i, img in enumerate(base)]))
        curve.append((float(scale), abs(val - real.noise_sigma)))
        return val - real.noise_sigma

    lo, hi = 0.0, float(s.max_noise_sigma)
    f_lo, f_hi = measured(lo), measured(hi)
    if f_lo >= 0:
        scale, note = 0.0, "the forward model is already as noisy as the real frames without added noise"
    elif f_hi <= 0:
        scale, note = hi, f"real noise above the bound calibrate.max_noise_sigma = {hi}"
    else:
        scale = float(brentq(measured, lo, hi, xtol=1e-3, rtol=1e-4, maxiter=30))
        note = "root of mean noise σ (forward) - mean noise σ (real)"
    note += f"; closed-form shape from the real flat patches: shot_gain/read_sigma^2 = {ratio:.4g}"
    return StepResult({"camera": {"shot_gain": round(ratio * scale ** 2, 6), "read_sigma": round(scale, 5)}},
                      sorted(curve), note)


def affine_residual(sim: Profile, real: Profile, min_count: int) -> float:
    """RMS residual (weighted by counts) of the real profile after the best affine map a·sim + b
    over bins populated on both sides (NaN with fewer than 3 bins): colour gains, tone and the
    airlight's level act on every distance alike, haze changes the profile's shape."""
    use = (sim.count >= min_count) & (real.count >= min_count) & np.isfinite(sim.median) & np.isfinite(real.median)
    if use.sum() < 3:
        return math.nan
    x, y = sim.median[use], real.median[use]
    w = np.minimum(sim.count[use], real.count[use]).astype(np.float64)
    a_mat = np.stack([x, np.ones_like(x)], 1) * np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(a_mat, y * np.sqrt(w), rcond=None)
    return float(np.sqrt(np.sum(w * (y - x * coef[0] - coef[1]) ** 2) / np.sum(w)))


def fit_haze(sim: list[SimFrame], real: Stats, params: dict, s: Settings) -> StepResult:
    """Visibility (m) whose lane-luminance-vs-distance profile matches the real one up to an
    affine map (:func:`affine_residual`)."""
    haze = params.get("haze") or {}
    thr = float(haze.get("contrast_threshold") or 0.02)
    shot, read, q = _cam(params)
    clear = with_values(_quiet(params), haze={"visibility_m": None})
    base = _render_all(sim, clear, s.seed)
    air = [resolve_airlight(f.image, f.depth_m, haze.get("airlight", "auto")) for f in sim]
    rows = sim_rows(sim)
    cache: dict[float, float] = {}

    def objective(log_v: float) -> float:
        key = round(log_v, 6)
        if key not in cache:
            vis = math.exp(log_v)
            imgs = [finish(koschmieder_u8(img, transmission(f.depth_m, vis, f.intrinsics, None, thr), a), shot, read, q, i)
                    for i, (img, f, a) in enumerate(zip(base, sim, air))]
            cache[key] = affine_residual(road_profile(imgs, rows, s), real.road, s.min_bin_count)
        return cache[key]

    grid = [math.log(v) for v in s.visibility_grid_m]
    if all(math.isnan(objective(g)) for g in grid):
        return StepResult({}, [], f"too few distance bins with >= {s.min_bin_count} road rows on both sides")
    log_v, _ = _grid_then_bounded(objective, grid)
    curve = sorted((round(math.exp(k), 3), f) for k, f in cache.items())
    return StepResult({"haze": {"visibility_m": round(math.exp(log_v), 2)}}, curve,
                      "RMS of the real lane-luminance profile after the best affine map of the synthetic one")


def invert_profile(grid: np.ndarray, medians: np.ndarray, target: float) -> float:
    """σ at which a (non-increasing) median-vs-σ curve reaches ``target`` (linear interpolation,
    clamped to the grid)."""
    env = np.minimum.accumulate(np.asarray(medians, np.float64))
    return float(np.interp(-target, -env, np.asarray(grid, np.float64)))


def fit_blur(sim: list[SimFrame], real: Stats, params: dict, s: Settings) -> StepResult:
    """Per distance bin the σ that matches the real effective blur, then the physics σ(z) curve."""
    from scipy.optimize import least_squares

    shot, read, q = _cam(params)
    sharp_p = with_values(_quiet(params), blur={"sigma": 0.0})
    grid = np.asarray(s.blur_grid_px, np.float64)
    per_sigma = []
    for sig in grid:  # the uniform blur goes where the optics blur goes: before haze, which cuts its halo into the sky
        vals = []
        for i, f in enumerate(sim):
            img = cv2.GaussianBlur(f.image, (0, 0), sig) if sig > 0 else f.image
            out = render(img, f.depth_m, f.instance, f.intrinsics, sharp_p, _values(sharp_p, f, s.seed), name=f.frame_id)[0]
            vals.append(blur_values(finish(out, shot, read, q, i), f.boxes, s))
        per_sigma.append(_profile([f.distance_m for f in sim], vals, s.distance_bins_m))
    points = []
    for k in range(len(s.distance_bins_m) - 1):
        n_sim, n_real = per_sigma[0].count[k], real.blur.count[k]
        if n_sim < s.min_bin_count or n_real < s.min_bin_count or not np.isfinite(real.blur.median[k]):
            continue
        sig = invert_profile(grid, [-p.median[k] for p in per_sigma], -real.blur.median[k])
        points.append((float(real.blur.distance_m[k]), sig, float(min(n_sim, n_real))))
    if len(points) < 2:
        return StepResult({}, [], f"too few distance bins with >= {s.min_bin_count} boxes on both sides")
    z, sig, w = (np.array(c) for c in zip(*points))

    def resid(x):  # distance_sigma_px's linear curve (far = near + span), float64 for the Jacobian
        sigma, near, span = x
        return np.sqrt(w) * (sigma * np.clip((z - near) / span, 0.0, 1.0) - sig)

    blur = params.get("blur") or {}
    x0 = [max(float(np.max(sig)), 0.1), 0.0, float(np.mean(blur.get("far_m", 70.0)))]
    # soft-L1: a bin whose few synthetic objects look unlike the real ones does not drag the curve
    res = least_squares(resid, x0, loss="soft_l1", f_scale=0.3,
                        bounds=([0.0, 0.0, 10.0], [float(grid.max()) * 3, 30.0, 300.0]))
    sigma, near, span = (float(v) for v in res.x)
    far = near + span
    curve = [{"distance_m": round(a, 3), "matched_sigma_px": round(b, 4), "weight": int(c),
              "fitted_sigma_px": round(float(sigma * np.clip((a - near) / (far - near), 0.0, 1.0)), 4)}
             for a, b, c in points]
    return StepResult({"blur": {"sigma": round(sigma, 4), "near_m": round(near, 3), "far_m": round(far, 3)}}, curve,
                      "linear distance curve through the per-bin matched sigmas (weighted soft-L1 least squares)")


def _w1(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import wasserstein_distance
    return float(sum(wasserstein_distance(a[:, c], b[:, c]) for c in range(3)))


def fit_colour(sim: list[SimFrame], real: Stats, params: dict, s: Settings) -> StepResult:
    """White-balance gains, exposure, tone γ and contrast minimising Σ W1(L, a, b) to the real
    pixels plus the same sum over the lane ahead (:func:`lane_mask`); with haze on, the airlight in
    closed form with them.

    The lane term ties the colour to one material that every frame of both worlds shows (the
    road, seen at every distance, hazed like everything else): the all-pixel distributions also
    follow what the two image sets happen to show (how much sky, which car colours), which on a
    small synthetic set pulls the gains by several percent.

    The sky and far pixels *are* the airlight seen through the camera, near pixels the scene's
    own colours through it; with the airlight held at its setting, a real world whose surfaces
    are warmer than the renderer's (or whose sky is bluer) reads as a white-balance error (on the
    demo world about 5 % in blue). So the real frames' airlight is measured (``real.airlight``:
    He et al.'s dark-channel estimate, median over frames) and, for every candidate camera, the
    synthetic airlight is the level that this camera maps onto it (:func:`invert_colour`). The
    camera keeps its 5 parameters; the airlight follows from the data (3 free airlight values
    overfit what the sky's share of each image set says). Everything between the haze and the
    colour table (chromatic aberration, vignetting) is linear in the image, so each sampled pixel
    is ``p0 + (p1 − p0)·A/255`` with p0, p1 the frame rendered with a black and a white airlight.
    """
    from scipy.optimize import minimize

    shot, read, _ = _cam(params)
    neutral = with_values(_quiet(params), camera={"wb_gain_r": 1.0, "wb_gain_b": 1.0, "exposure_stops": 0.0,
                                                   "tone_gamma": 1.0, "wb_temperature_k": None, "contrast": 1.0})

    # the lane ahead among the sampled pixels: one material in every frame of both worlds
    road = np.concatenate([lane_mask(f.image.shape[:2], r, fx, cx, m)[::s.lab_stride, ::s.lab_stride].reshape(-1)
                           for f, r, (fx, cx), m in zip(sim, *sim_rows(sim))])
    if real.road_lab is None or not len(real.road_lab) or not road.any():
        road = None

    def sampled(p: dict) -> np.ndarray:
        return np.concatenate([np.ascontiguousarray(img[::s.lab_stride, ::s.lab_stride]).reshape(-1, 3)
                               for img in _render_all(sim, p, s.seed)]).astype(np.float64)

    haze_on = haze_enabled(params, _values(params, sim[0], s.seed))  # the physics' own test, on drawn values
    a_real = real.airlight if haze_on and real.airlight is not None else None
    if a_real is None:
        p0, dp = sampled(neutral), None
    else:
        p0 = sampled(with_values(neutral, haze={"airlight": [0.0, 0.0, 0.0]}))
        dp = (sampled(with_values(neutral, haze={"airlight": [255.0, 255.0, 255.0]})) - p0) / 255.0

    def camera(x) -> tuple:
        return (math.exp(x[0]), 1.0, math.exp(x[1])), float(x[2]), math.exp(x[3]), math.exp(x[4])

    def airlight(x) -> np.ndarray | None:
        return None if a_real is None else invert_colour(a_real, *camera(x))

    def pixels(x) -> np.ndarray:  # (M, 1, 3) uint8 before the colour table
        p = p0 if dp is None else p0 + dp * airlight(x)
        return np.clip(np.round(p), 0, 255).astype(np.uint8).reshape(-1, 1, 3)

    real_lin = srgb_to_linear(cv2.cvtColor(real.lab.reshape(-1, 1, 3), cv2.COLOR_Lab2RGB).reshape(-1, 3).clip(0, 1))
    sim_lin = srgb_to_linear(pixels(np.zeros(5)).reshape(-1, 3) / 255.0)
    gw = real_lin.mean(0) / np.maximum(sim_lin.mean(0), 1e-6)  # gray world, linear light
    x0 = np.array([math.log(gw[0] / gw[1]), math.log(gw[2] / gw[1]), math.log2(gw[1]), 0.0, 0.0])
    curve = []

    def objective(x) -> float:
        out = colour_u8(pixels(x), *camera(x))
        if shot > 0 or read > 0:
            out = sensor_noise_u8(out, np.random.default_rng(s.seed), shot, read)  # the same noise every call
        lab = cv2.cvtColor(out.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab).reshape(-1, 3)
        val = _w1(lab, real.lab)
        if road is not None:
            val += _w1(lab[road], real.road_lab)
        curve.append(([round(float(v), 5) for v in x], round(val, 5)))
        return val

    # scipy's default simplex steps a zero start by 0.00025 only: γ and contrast (log 0) would never move
    simplex = np.vstack([x0, x0 + np.diag([0.1, 0.1, 0.25, 0.1, 0.1])])
    res = minimize(objective, x0, method="Nelder-Mead",
                   options={"xatol": 1e-3, "fatol": 1e-3, "maxiter": 600, "initial_simplex": simplex})
    x = res.x
    values = {"camera": {"wb_gain_r": round(math.exp(x[0]), 5), "wb_gain_b": round(math.exp(x[1]), 5),
                         "exposure_stops": round(float(x[2]), 5), "tone_gamma": round(math.exp(x[3]), 5),
                         "contrast": round(math.exp(x[4]), 5)}}
    note = f"Nelder-Mead from the gray-world gains {[round(float(v), 4) for v in gw / gw[1]]}"
    if a_real is not None:
        values["haze"] = {"airlight": [round(float(v), 2) for v in airlight(x)]}
        note += (f"; airlight: the level the fitted camera maps onto the real frames' airlight "
                 f"{[round(float(v), 2) for v in a_real]}")
    return StepResult(values, curve, note)


# ----------------------------------------------------------------------------- the whole calibration
def tall_boxes(frame, min_height_px: float):
    """A copy of a :class:`SimFrame` or :class:`RealFrame` keeping its boxes (and their distances)
    at least ``min_height_px`` tall."""
    keep = (frame.boxes[:, 3] - frame.boxes[:, 1]) >= min_height_px if len(frame.boxes) else np.zeros(0, bool)
    return dataclasses.replace(frame, boxes=frame.boxes[keep], distance_m=frame.distance_m[keep])


def calibrate(sim: list[SimFrame], real: list[RealFrame], params: dict, s: Settings,
              progress: Callable[[str], None] = lambda step: None) -> dict:
    """Fit the groups in ``s.fit`` (order of :data:`GROUPS`, noise twice) starting from
    ``params`` (sections blur, haze, camera). Returns {"params": fitted values (params-shaped),
    "steps": {group: {values, curve, note}}, "real": Stats, "before": Stats, "after": Stats}.

    Only boxes at least ``s.min_box_height_px`` tall enter the per-box statistics, on both sides:
    the per-box estimates depend on box size, and a real dataset leaves its smallest objects
    unlabelled (KITTI's DontCare) while the synthetic ground truth lists every one.
    """
    sim = [tall_boxes(f, s.min_box_height_px) for f in sim]
    real = [tall_boxes(r, s.min_box_height_px) for r in real]
    real_stats = image_set_stats([r.image for r in real], [r.boxes for r in real], [r.distance_m for r in real], s,
                                 real_rows(real, s))
    srows = sim_rows(sim)
    progress("real statistics")
    current = copy.deepcopy(params)
    fitted: dict = {}
    steps: dict = {}
    plan = [g for g in GROUPS if g in s.fit] + (["noise"] if "noise" in s.fit else [])
    for group in plan:
        if group == "jpeg":
            step = fit_jpeg(real)
        elif group == "noise":
            step = fit_noise(sim, real_stats, current, s)
        elif group == "haze":
            step = fit_haze(sim, real_stats, current, s)
        elif group == "blur":
            step = fit_blur(sim, real_stats, current, s)
        else:
            step = fit_colour(sim, real_stats, current, s)
        current = with_values(current, **step.values)
        for sec, kv in step.values.items():
            fitted.setdefault(sec, {}).update(kv)
        name = group if group not in steps else f"{group}_refit"
        steps[name] = {"values": step.values, "objective_curve": step.curve, "note": step.note}
        progress(f"fit {name}")
    before = image_set_stats([forward(f, params, s.seed) for f in sim], [f.boxes for f in sim],
                             [f.distance_m for f in sim], s, srows)
    progress("statistics before")
    after = image_set_stats([forward(f, current, s.seed) for f in sim], [f.boxes for f in sim],
                            [f.distance_m for f in sim], s, srows)
    progress("statistics after")
    return {"params": fitted, "steps": steps, "real": real_stats, "before": before, "after": after}


def comparison(real: Stats, before: Stats, after: Stats, min_count: int) -> dict:
    """Distance of each statistic to the real frames, before and after calibration (lower is better)."""
    def w1(x: Stats) -> float:
        return _w1(x.lab, real.lab) / 3.0

    rows = {
        "sharpness_vs_distance": (profile_distance(before.sharpness, real.sharpness, min_count),
                                  profile_distance(after.sharpness, real.sharpness, min_count), "decades of sharpness"),
        "road_luminance_vs_distance": (affine_residual(before.road, real.road, min_count),
                                       affine_residual(after.road, real.road, min_count),
                                       "gray levels, RMS after the best affine map"),
        "contrast_vs_distance": (profile_distance(before.contrast, real.contrast, min_count, True),
                                 profile_distance(after.contrast, real.contrast, min_count, True),
                                 "ln contrast, offset-free"),
        "noise_sigma": (abs(before.noise_sigma - real.noise_sigma), abs(after.noise_sigma - real.noise_sigma), "gray levels"),
        "blur_vs_distance": (profile_distance(before.blur, real.blur, min_count),
                             profile_distance(after.blur, real.blur, min_count), "px of effective blur"),
        "spectrum_slope": (abs(before.slope - real.slope), abs(after.slope - real.slope), "log-log slope"),
        "lab_w1": (w1(before), w1(after), "mean W1 over L, a, b"),
    }
    return {k: {"before": round(b, 5), "after": round(a, 5), "unit": u} for k, (b, a, u) in rows.items()}
