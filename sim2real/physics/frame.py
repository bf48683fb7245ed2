"""One frame through every effect: sample the parameters, then apply them deterministically.

Domain randomisation follows kornia's split: :func:`sample_values` turns the params sections
(each randomisable value fixed, or a ``[low, high]`` range) into concrete per-frame values from
a generator seeded by (global seed, frame id); :func:`render` applies those values with no
randomness of its own except the noise fields, which are seeded by the drawn ``noise_seed``.
So any frame can be replayed from its row in the per-frame CSV, alone.

Order of effects, optics → sensor → ISP: optics (distance blur or defocus, restricted to
``blur.targets``) → exposure time (ego-motion blur) → atmosphere (Koschmieder haze) → lens
(lateral chromatic aberration, then fall-off: vignetting) → sensor exposure and ISP colour
(exposure in stops, white balance, tone curve: one per-channel table in linear light) →
noise (Poisson–Gaussian) → JPEG re-compression, the stage's final JPEG write at
``camera.jpeg_quality``. Physically haze comes before the lens; since transmission varies
slowly with depth and layers are depth bands, the two commute within a blur kernel. Read and
shot noise arise in the sensor, before white balance and the tone curve; ``camera.shot_gain``
and ``camera.read_sigma`` are defined in *output* gray levels (the noise the ISP passes on,
which is what the calibrate stage measures on processed photos, Foi et al. 2008), so the noise
is added after the colour table, which would otherwise rescale it. Every step works on 8-bit
images with OpenCV (each rounds to the nearest level, < 0.5 gray level), which keeps the
per-frame cost near the cost of decoding and encoding the frame.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from sim2real.errors import ConfigError
from sim2real.params import MAX_SIGMA_PX, check_random
from sim2real.physics._checks import check_depth, check_image, check_mask, where
from sim2real.physics.blur import CURVES, apply_targets, coc_sigma_px, distance_sigma_px, target_weight
from sim2real.physics.camera import chromatic_aberration_u8, motion_blur_f32, sensor_noise_u8, vignetting_u8
from sim2real.physics.colour import colour_u8, is_neutral, white_balance_gains
from sim2real.physics.haze import resolve_airlight, check_visibility, koschmieder_u8, lowfreq_noise, transmission
from sim2real.physics.layered import layered_blur, to_u8
from sim2real.rng import frame_rng

MODES = ("distance", "defocus", "none")
DEFAULT_JPEG_QUALITY = 95  # the output JPEG's quality when camera.jpeg_quality is null (no compression effect)

# (section, key, output column, integer?) — every value that may be a [low, high] range.
# One uniform number is drawn per entry, in this order, whether the value is fixed or not,
# so turning one value into a range never changes the draws of the others.
RANDOM_KEYS: tuple[tuple[str, str, str, bool], ...] = (
    ("blur", "sigma", "blur_sigma_px", False),
    ("blur", "near_m", "blur_near_m", False),
    ("blur", "far_m", "blur_far_m", False),
    ("blur", "power", "blur_power", False),
    ("blur", "focus_m", "blur_focus_m", False),
    ("blur", "f_number", "blur_f_number", False),
    ("haze", "visibility_m", "haze_visibility_m", False),
    ("haze", "heterogeneity", "haze_heterogeneity", False),
    ("camera", "shot_gain", "camera_shot_gain", False),
    ("camera", "read_sigma", "camera_read_sigma", False),
    ("camera", "jpeg_quality", "camera_jpeg_quality", True),
    ("camera", "vignetting", "camera_vignetting", False),
    ("camera", "ego_speed_mps", "camera_ego_speed_mps", False),
    ("camera", "exposure_s", "camera_exposure_s", False),
)
#: effects added later: drawn after ``noise_seed``, so the draws (and outputs) of the ones above stay
LATER_KEYS: tuple[tuple[str, str, str, bool], ...] = (
    ("camera", "chromatic_aberration", "camera_chromatic_aberration", False),
    ("camera", "exposure_stops", "camera_exposure_stops", False),
    ("camera", "tone_gamma", "camera_tone_gamma", False),
    ("camera", "wb_temperature_k", "camera_wb_temperature_k", False),
    ("camera", "wb_gain_r", "camera_wb_gain_r", False),
    ("camera", "wb_gain_b", "camera_wb_gain_b", False),
    ("camera", "contrast", "camera_contrast", False),
)
SIGNED_KEYS = {("camera", "exposure_stops"), ("camera", "chromatic_aberration")}  # may be negative
VALUE_COLUMNS = tuple(col for _, _, col, _ in RANDOM_KEYS) + ("noise_seed",) + tuple(col for _, _, col, _ in LATER_KEYS)


def _range(section: str, key: str, spec) -> tuple[float, float] | None:
    """(low, high) of an (R) value, checked by :func:`sim2real.params.check_random` (NaN, bounds, .inf)."""
    return check_random(f"{section}.{key}", spec)


def sample_values(params: Mapping, seed: int, frame_id: str) -> dict:
    """Concrete per-frame values {column: value} drawn from ``params`` (sections blur, haze, camera).

    A fixed value is returned as is; ``[low, high]`` draws uniformly (integers inclusive);
    ``null`` stays None (effect off). ``noise_seed`` seeds the noise fields of :func:`render`.
    """
    rng = frame_rng(seed, frame_id)
    out: dict = {}

    def draw(keys) -> None:
        for section, key, col, integer in keys:
            u = float(rng.random())
            sec = params.get(section) or {}
            rng_ = _range(section, key, sec.get(key) if hasattr(sec, "get") else None)
            if rng_ is None:
                out[col] = None
                continue
            lo, hi = rng_
            if hi == lo:  # a fixed value (also .inf, where inf - inf would give NaN)
                out[col] = int(lo) if integer else lo
            elif integer:
                out[col] = min(int(lo + math.floor(u * (hi - lo + 1))), int(hi))
            else:
                out[col] = lo + u * (hi - lo)

    draw(RANDOM_KEYS)
    out["noise_seed"] = int(rng.integers(0, 2**31 - 1))
    draw(LATER_KEYS)
    return out


def _get(sec: Mapping, key: str, default):
    v = sec.get(key, default) if sec is not None else default
    return default if v is None else v


def check_config(params: Mapping) -> None:
    """Validate the non-random settings early (before any frame is processed)."""
    blur, haze = params.get("blur") or {}, params.get("haze") or {}
    mode = _get(blur, "mode", "distance")
    if mode not in MODES:
        raise ConfigError(f"blur.mode must be one of {MODES}, got {mode!r}")
    if _get(blur, "curve", "linear") not in CURVES:
        raise ConfigError(f"blur.curve must be one of {CURVES}, got {blur.get('curve')!r}")
    if _get(blur, "targets", "all") not in ("all", "objects", "background"):
        raise ConfigError(f"blur.targets must be all | objects | background, got {blur.get('targets')!r}")
    # NaN, bounds (sigma <= MAX_SIGMA_PX, |chromatic aberration| < 0.5, colour temperature range, JPEG
    # quality 1..100), .inf only where it means something: sim2real.params.RANDOM_RULES, one table
    for section, key, _, _ in RANDOM_KEYS + LATER_KEYS:
        _range(section, key, (params.get(section) or {}).get(key))
    if float(_get(blur, "max_sigma_px", 8.0)) > MAX_SIGMA_PX:
        raise ConfigError(f"blur.max_sigma_px must be <= {MAX_SIGMA_PX:g}, got {blur.get('max_sigma_px')!r}")
    if not 0 <= float(_get(haze, "min_transmission", 0.0)) < 1:
        raise ConfigError(f"haze.min_transmission must be in [0, 1), got {haze.get('min_transmission')!r}")


def haze_enabled(params: Mapping, values: Mapping) -> bool:
    haze = params.get("haze") or {}
    vis = values.get("haze_visibility_m")
    return bool(_get(haze, "enabled", True)) and vis is not None and not math.isinf(vis)


def render(image_u8: np.ndarray, depth_m: np.ndarray, instance: np.ndarray | None, intrinsics, params: Mapping,
           values: Mapping, name: str | None = None) -> tuple[np.ndarray, np.ndarray | None, list[float] | None]:
    """Apply every enabled effect with the drawn ``values``.

    Parameters
    ----------
    image_u8 : (H, W, 3) uint8 RGB. depth_m : (H, W) float32 z-depth (m, +inf sky).
    instance : (H, W) int instance map (trackID + 1, 0 = none) or None.
    intrinsics : (fx, fy, cx, cy) in px, or None.
    params : the ``blur``, ``haze``, ``camera`` sections (non-random settings).
    values : from :func:`sample_values`.

    Returns
    -------
    (image (H, W, 3) uint8, transmission (H, W) float32 or None when haze is off,
    airlight [r, g, b] or None).
    """
    check_image(image_u8, name)
    check_depth(depth_m, image_u8.shape[:2], name)
    if instance is not None:
        check_mask(instance, image_u8.shape[:2], "instance mask", name)
    blur, haze, cam = params.get("blur") or {}, params.get("haze") or {}, params.get("camera") or {}
    noise_rng = np.random.default_rng(int(values["noise_seed"]))
    # 1. optics: distance blur or defocus (8-bit layered compositing), on blur.targets
    mode = _get(blur, "mode", "distance")
    smap = side = None
    if mode == "distance" and (values.get("blur_sigma_px") or 0) > 0:
        smap = distance_sigma_px(depth_m, values["blur_sigma_px"], values["blur_near_m"], values["blur_far_m"],
                                 _get(blur, "curve", "linear"), values.get("blur_power") or 1.0)
    elif mode == "defocus":
        if intrinsics is None:
            raise ConfigError(f"{where(name)}: blur.mode=defocus needs the intrinsics (fx)")
        smap = coc_sigma_px(depth_m, float(_get(blur, "focal_length_mm", 4.0)), values["blur_f_number"],
                            values["blur_focus_m"], float(intrinsics[0]), float(_get(blur, "max_sigma_px", 8.0)))
        side = depth_m < values["blur_focus_m"]
    img_u8 = image_u8
    if smap is not None:
        blurred = layered_blur(image_u8, depth_m, smap, step_px=float(_get(blur, "step_px", 0.5)),
                               max_layers=int(_get(blur, "max_layers", 16)), side=side)
        wgt = target_weight(instance, None, _get(blur, "targets", "all"), float(_get(blur, "feather_px", 2.0)), name)
        img_u8 = apply_targets(image_u8, blurred, wgt)
    # 2. exposure: ego-motion blur
    img = img_u8
    speed, expo = values.get("camera_ego_speed_mps") or 0.0, values.get("camera_exposure_s") or 0.0
    if speed * expo > 0:
        img = to_u8(motion_blur_f32(img, depth_m, speed, expo, intrinsics, int(_get(cam, "motion_samples", 5))))
    # 3. atmosphere: Koschmieder haze (after the blur: t varies slowly with depth, so the two
    #    commute within a blur kernel, and the 8-bit blur of the input is the cheap one)
    t = airlight = None
    if haze_enabled(params, values):
        vis = check_visibility(values["haze_visibility_m"], name)
        het = values.get("haze_heterogeneity") or 0.0
        scale = lowfreq_noise(depth_m.shape, noise_rng, het, float(_get(haze, "cell_px", 128))) if het > 0 else None
        t = transmission(depth_m, vis, intrinsics, scale, float(_get(haze, "contrast_threshold", 0.02)))
        a = resolve_airlight(image_u8, depth_m, _get(haze, "airlight", "auto"), name)
        airlight = [float(v) for v in a]
        img = koschmieder_u8(img, t, a)
    # 4. lens: lateral chromatic aberration about the principal point, then fall-off
    centre = None if intrinsics is None else (intrinsics[2], intrinsics[3])
    ca = values.get("camera_chromatic_aberration") or 0.0
    if ca != 0:
        img = chromatic_aberration_u8(img, ca, centre)
    vig = values.get("camera_vignetting") or 0.0
    if vig > 0:
        img = vignetting_u8(img, vig, centre)
    # 5. sensor exposure and ISP colour: exposure, white balance, tone curve (linear light), contrast
    gains = colour_gains(values)
    stops = values.get("camera_exposure_stops") or 0.0
    gamma = values.get("camera_tone_gamma") or 1.0
    contrast = values.get("camera_contrast") or 1.0
    if not is_neutral(gains, stops, gamma, contrast):
        img = colour_u8(img, gains, stops, gamma, contrast)  # one table
    # 6. noise in output gray levels (see the module docstring): Poisson-Gaussian
    shot, read = values.get("camera_shot_gain") or 0.0, values.get("camera_read_sigma") or 0.0
    if shot > 0 or read > 0:
        img = sensor_noise_u8(img, noise_rng, shot, read)
    return (img.copy() if img is image_u8 else img), t, airlight


def colour_gains(values: Mapping) -> np.ndarray:
    """The (3,) linear-light white-balance gains of drawn ``values`` (green = 1; all 1 when unset)."""
    return white_balance_gains(values.get("camera_wb_gain_r"), values.get("camera_wb_gain_b"),
                               values.get("camera_wb_temperature_k"))


def object_transmission(t: np.ndarray, instance: np.ndarray | None, track_ids, boxes) -> np.ndarray:
    """Mean transmission per object over its instance-mask pixels (value trackID + 1) inside its
    box, or over the whole box when the mask has no pixel there.

    ``boxes``: (N, 4) inclusive int left, top, right, bottom. Returns (N,) float64.
    """
    out = np.ones(len(track_ids))
    for i, (tid, box) in enumerate(zip(track_ids, np.asarray(boxes).reshape(-1, 4))):
        l, tp, r, b = (int(v) for v in box)
        region = t[max(tp, 0):b + 1, max(l, 0):r + 1]
        if not region.size:
            continue
        if instance is not None:
            mask = instance[max(tp, 0):b + 1, max(l, 0):r + 1] == int(tid) + 1
            if mask.any():
                out[i] = float(region[mask].mean())
                continue
        out[i] = float(region.mean())
    return out
