"""Distance blur and thin-lens defocus, both occlusion-aware (see :mod:`.layered`).

Distance blur is the default realism effect: real KITTI frames soften with distance (few
pixels per object, lens softness, haze, motion), while Virtual KITTI renders 5 m and 120 m
equally sharp. Thin-lens defocus is offered as an ablation: KITTI's 4 mm lenses at f/2 or so
are close to hyperfocal, so true defocus is below a pixel beyond a few metres.

References
----------
Potmesil, M., Chakravarty, I., "A lens and aperture camera model for synthetic image
generation", SIGGRAPH 1981 (thin-lens circle of confusion).
Geiger, A., Lenz, P., Stiller, C., Urtasun, R., "Vision meets robotics: the KITTI dataset",
IJRR 2013 (camera: Point Grey Flea 2, 4 mm lenses).
"""
from __future__ import annotations

import cv2
import numpy as np

from sim2real.errors import ConfigError
from sim2real.params import MAX_SIGMA_PX
from sim2real.physics._checks import check_depth, check_image, check_mask, check_nonneg, check_positive, where
from sim2real.physics.layered import layered_blur, to_u8

CURVES = ("linear", "power", "smoothstep")
TARGETS = ("all", "objects", "background")


def distance_sigma_px(depth_m: np.ndarray, sigma_px: float, near_m: float, far_m: float,
                      curve: str = "linear", power: float = 1.0) -> np.ndarray:
    """Per-pixel Gaussian σ (px): 0 at ``near_m`` and closer, ``sigma_px`` at ``far_m`` and beyond.

    ``curve``: "linear" (u), "power" (u**power) or "smoothstep" (3u²−2u³) of
    u = clip((depth − near) / (far − near), 0, 1). Sky (+inf) gets ``sigma_px``.
    Returns (H, W) float32.
    """
    if curve not in CURVES:
        raise ConfigError(f"blur.curve must be one of {CURVES}, got {curve!r}")
    if not far_m > near_m:
        raise ConfigError(f"blur.far_m ({far_m}) must be greater than blur.near_m ({near_m})")
    clamped = cv2.max(cv2.min(depth_m.astype(np.float32, copy=False), float(far_m)), float(near_m))
    k = 1.0 / (far_m - near_m)
    if curve == "linear":  # exactly 0 at near_m (clamped == near there) and at most sigma_px beyond far_m
        return cv2.min((clamped - np.float32(near_m)) * np.float32(k * sigma_px), float(sigma_px))
    # exactly 0 at near_m and at most 1 beyond far_m: a fractional power magnifies any rounding there
    u = cv2.min(cv2.max((clamped - np.float32(near_m)) * np.float32(k), 0.0), 1.0)
    if curve == "power":
        u = np.power(u, np.float32(power))
    else:
        u = u * u * (3.0 - 2.0 * u)
    return (u * np.float32(sigma_px)).astype(np.float32, copy=False)


def distance_blur(image_u8: np.ndarray, depth_m: np.ndarray, sigma_px: float, near_m: float, far_m: float,
                  **opts) -> np.ndarray:
    """Blur that grows with distance: σ = 0 px at ``near_m`` up to ``sigma_px`` at ``far_m`` and beyond.

    Occlusion-aware: the frame is split into depth layers of constant (quantised) σ, each
    layer's premultiplied colour and coverage are blurred, and the layers are composited
    far-to-near with "over", so a blurred background never bleeds over a sharp near object.

    Parameters
    ----------
    image_u8 : (H, W, 3) uint8 RGB.
    depth_m : (H, W) float32 z-depth in metres; +inf for sky (vKITTI2's 65535 cm).
    sigma_px : Gaussian σ in pixels at ``far_m`` and beyond; 0 returns an identical copy.
    near_m, far_m : depths (m) where the blur starts and where it saturates.
    **opts : ``curve`` ("linear" | "power" | "smoothstep"), ``power``, ``step_px`` (σ step
        between layers, default 0.5 px), ``max_layers`` (16), ``name`` (frame id for errors).

    Returns
    -------
    (H, W, 3) uint8 RGB.

    References
    ----------
    Porter & Duff, SIGGRAPH 1984; Kraus & Strengert, CGF 2007 (see :mod:`.layered`).
    """
    unknown = set(opts) - {"curve", "power", "step_px", "max_layers", "name"}
    if unknown:
        raise TypeError(f"distance_blur: unknown options {sorted(unknown)}")
    name = opts.get("name")
    check_image(image_u8, name)
    check_depth(depth_m, image_u8.shape[:2], name)
    sigma_px = check_nonneg(sigma_px, "blur.sigma", name, allow_inf=False)
    if sigma_px > MAX_SIGMA_PX:
        raise ConfigError(f"{where(name)}: blur.sigma must be <= {MAX_SIGMA_PX:g} px, got {sigma_px:g}")
    if sigma_px == 0:
        return image_u8.copy()
    smap = distance_sigma_px(depth_m, sigma_px, near_m, far_m, opts.get("curve", "linear"), opts.get("power", 1.0))
    return layered_blur(image_u8, depth_m, smap, step_px=opts.get("step_px", 0.5), max_layers=opts.get("max_layers", 16))


def coc_sigma_px(depth_m: np.ndarray, focal_length_mm: float, f_number: float, focus_m: float, fx_px: float,
                 max_sigma_px: float = 8.0) -> np.ndarray:
    """Thin-lens circle of confusion as a Gaussian σ (px) per pixel.

    c = A·|d − d_f| / d · f / (d_f − f) on the sensor, with aperture A = f / N; in pixels
    c_px = c / pitch with pitch = f / fx_px (fx_px from the intrinsics). σ = c_px / 2
    (a common disc→Gaussian approximation), clipped at ``max_sigma_px``. Sky → the d → ∞ limit.
    Returns (H, W) float32.
    """
    f = focal_length_mm * 1e-3
    if not focus_m > f:
        raise ConfigError(f"blur.focus_m ({focus_m}) must exceed the focal length ({focal_length_mm} mm)")
    d = np.maximum(depth_m.astype(np.float64), 1e-3)
    ratio = np.where(np.isfinite(d), np.abs(d - focus_m) / np.where(np.isfinite(d), d, 1.0), 1.0)
    c_px = fx_px * (f / f_number) * ratio / (focus_m - f)
    return np.minimum(c_px / 2.0, max_sigma_px).astype(np.float32)


def defocus(image_u8: np.ndarray, depth_m: np.ndarray, focal_length_mm: float, f_number: float, focus_m: float,
            fx_px: float, **opts) -> np.ndarray:
    """Thin-lens depth of field, occlusion-aware (an ablation: KITTI's lens is near hyperfocal).

    Parameters
    ----------
    image_u8 : (H, W, 3) uint8 RGB.
    depth_m : (H, W) float32 z-depth in metres (+inf = sky).
    focal_length_mm, f_number : the lens (KITTI: about 4 mm; f/2 is assumed).
    focus_m : focus distance in metres.
    fx_px : focal length in pixels (vKITTI2 intrinsics K[0,0]); gives the pixel pitch.
    **opts : ``max_sigma_px`` (8), ``step_px`` (0.5), ``max_layers`` (16), ``name``.

    Returns
    -------
    (H, W, 3) uint8 RGB. Layers in front of and behind the focus plane are kept apart.

    References
    ----------
    Potmesil & Chakravarty, SIGGRAPH 1981; Kraus & Strengert, CGF 2007.
    """
    name = opts.get("name")
    check_image(image_u8, name)
    check_depth(depth_m, image_u8.shape[:2], name)
    check_positive(focal_length_mm, "blur.focal_length_mm", name)
    check_positive(f_number, "blur.f_number", name)
    check_positive(fx_px, "fx (intrinsics)", name)
    if not 0 < float(opts.get("max_sigma_px", 8.0)) <= MAX_SIGMA_PX:
        raise ConfigError(f"{where(name)}: blur.max_sigma_px must be in (0, {MAX_SIGMA_PX:g}], got {opts.get('max_sigma_px')}")
    smap = coc_sigma_px(depth_m, focal_length_mm, f_number, focus_m, fx_px, opts.get("max_sigma_px", 8.0))
    return layered_blur(image_u8, depth_m, smap, step_px=opts.get("step_px", 0.5),
                        max_layers=opts.get("max_layers", 16), side=depth_m < focus_m)


def target_weight(instance: np.ndarray, track_ids: np.ndarray | None, targets: str, feather_px: float,
                  name: str | None = None) -> np.ndarray | None:
    """Per-pixel weight (H, W) float32 of the blurred image for ``targets``; None for "all".

    "objects": 1 inside vehicle instance masks (instance value = trackID + 1, restricted to
    ``track_ids`` when given), ramping to 0 over ``feather_px`` *inside* the mask edge, and
    exactly 0 outside, so background pixels are untouched. "background": 1 − that.
    """
    if targets not in TARGETS:
        raise ConfigError(f"blur.targets must be one of {TARGETS}, got {targets!r}")
    if targets == "all":
        return None
    if instance is None:
        raise ConfigError(f"{where(name)}: blur.targets={targets} needs instance masks")
    obj = instance > 0
    if track_ids is not None:
        obj &= np.isin(instance, np.asarray(track_ids, dtype=np.int64) + 1)
    if feather_px > 0:
        dist = cv2.distanceTransform(obj.astype(np.uint8), cv2.DIST_L2, 3)
        wgt = np.clip(dist / np.float32(feather_px), 0.0, 1.0).astype(np.float32)
    else:
        wgt = obj.astype(np.float32)
    return wgt if targets == "objects" else 1.0 - wgt


def apply_targets(image_u8: np.ndarray, blurred_u8: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """Blend the blurred image in where ``weight`` > 0 (uint8 result); weight-0 pixels keep their exact values."""
    if weight is None:
        return blurred_u8
    w = weight[..., None]
    out = to_u8(image_u8.astype(np.float32) * (1.0 - w) + blurred_u8.astype(np.float32) * w)
    still = weight == 0
    out[still] = image_u8[still]
    return out


def blur_targets(image_u8: np.ndarray, blurred_u8: np.ndarray, instance: np.ndarray, targets: str,
                 feather_px: float = 2.0, track_ids=None, name: str | None = None) -> np.ndarray:
    """Keep ``blurred_u8`` only on ``targets`` ("all" | "objects" | "background"); uint8 (H, W, 3)."""
    check_image(image_u8, name)
    if targets != "all":
        check_mask(instance, image_u8.shape[:2], "instance mask", name)
    wgt = target_weight(instance, track_ids, targets, feather_px, name)
    if wgt is None:
        return blurred_u8.copy()
    return apply_targets(image_u8, blurred_u8, wgt)
