"""Camera effects: Poisson–Gaussian sensor noise, JPEG re-compression, vignetting, lateral
chromatic aberration, ego-motion blur.

All functions take and return RGB uint8 images (H, W, 3); the ``*_u8`` cores skip the input
checks (the stage checks once per frame).

References
----------
Foi, A., Trimeche, M., Katkovnik, V., Egiazarian, K., "Practical Poissonian-Gaussian noise
modeling and fitting for single-image raw-data", IEEE TIP 17(10), 2008.
Goldman, D. B., "Vignette and exposure calibration and compensation", IEEE TPAMI 32(12), 2010.
Boult, T. E., Wolberg, G., "Correcting chromatic aberrations using image warping", CVPR 1992, and
Kang, S. B., "Automatic removal of chromatic aberration from a single image", CVPR 2007
(lateral chromatic aberration as a radial magnification of red and blue against green).
Wallace, G. K., "The JPEG still picture compression standard", CACM 34(4), 1991.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from sim2real.errors import ConfigError
from sim2real.formats.images import encode_jpeg_roundtrip
from sim2real.physics._checks import check_depth, check_image, check_nonneg, where
from sim2real.physics._scratch import scratch
from sim2real.physics.layered import to_u8


def _normal_quantiles(levels: int = 256) -> np.ndarray:
    """Φ⁻¹((i + ½) / levels) for i < levels, rescaled to unit variance: (levels,) float32."""
    from statistics import NormalDist
    q = np.array([NormalDist().inv_cdf((i + 0.5) / levels) for i in range(levels)], np.float64)
    return (q / q.std()).astype(np.float32)


_NORMAL_Q = _normal_quantiles()


def sensor_noise_u8(image_u8: np.ndarray, rng: np.random.Generator, shot_gain: float, read_sigma: float) -> np.ndarray:
    """Poisson–Gaussian noise in the heteroscedastic Gaussian approximation (Foi et al. 2008).

    var(x) = shot_gain·x + read_sigma² in gray levels², x the clean value in [0, 255]:
    ``shot_gain`` is gray levels per photo-electron (0 = no shot noise), ``read_sigma`` the
    signal-independent std in gray levels. Standard normal deviates are drawn by inverse-CDF
    sampling from ``rng``'s random bytes through a 256-level quantile table (unit variance,
    tails cut at ±2.9σ: irrelevant for noise of a few gray levels, and 10x cheaper than
    Gaussian sampling); the std per pixel comes from a 256-entry table. Returns uint8
    (rounded, saturated); a pure function of the image and the generator state.
    """
    if shot_gain == 0 and read_sigma == 0:
        return image_u8.copy()
    std_lut = np.sqrt(float(shot_gain) * np.arange(256, dtype=np.float64) + float(read_sigma) ** 2).astype(np.float32)
    uniform = np.frombuffer(rng.bytes(image_u8.size), np.uint8).reshape(image_u8.shape)
    normal, std = scratch("sensor_noise", image_u8.shape, np.float32, 2)
    cv2.LUT(uniform, _NORMAL_Q, dst=normal)
    cv2.LUT(image_u8, std_lut, dst=std)
    cv2.multiply(normal, std, dst=normal)
    return cv2.add(image_u8, normal, dtype=cv2.CV_8U)


def sensor_noise(image_u8: np.ndarray, rng: np.random.Generator, shot_gain: float = 0.0, read_sigma: float = 0.0,
                 name: str | None = None) -> np.ndarray:
    """Add Poisson–Gaussian sensor noise; (H, W, 3) uint8 → uint8. Zero strength is the identity."""
    check_image(image_u8, name)
    check_nonneg(shot_gain, "camera.shot_gain", name, allow_inf=False)
    check_nonneg(read_sigma, "camera.read_sigma", name, allow_inf=False)
    return sensor_noise_u8(image_u8, rng, float(shot_gain), float(read_sigma))


def jpeg_recompress(image_u8: np.ndarray, quality: int | None, name: str | None = None) -> np.ndarray:
    """JPEG-encode at ``quality`` (1–100) and decode (blocking/ringing artefacts); None = identity."""
    check_image(image_u8, name)
    if quality is None:
        return image_u8.copy()
    q = int(quality)
    if not 1 <= q <= 100:
        raise ConfigError(f"{where(name)}: camera.jpeg_quality must be in 1..100, got {quality}")
    return encode_jpeg_roundtrip(image_u8, q)


@functools.lru_cache(maxsize=8)
def _radius2(h: int, w: int, cx: float, cy: float) -> np.ndarray:
    """Squared distance from (cx, cy), normalised so the farthest corner is 1."""
    x = np.arange(w, dtype=np.float64) - cx
    y = np.arange(h, dtype=np.float64) - cy
    r2 = x[None, :] ** 2 + y[:, None] ** 2
    r2 = (r2 / r2.max()).astype(np.float32)
    r2.setflags(write=False)
    return r2


def _centre(h: int, w: int, center: tuple[float, float] | None) -> tuple[float, float]:
    """The principal point (cx, cy) px: ``center`` when given, else the image centre of an (h, w) image."""
    if center is None:
        return (w - 1) / 2.0, (h - 1) / 2.0
    cx, cy = center
    return cx, cy


def vignetting_gain(shape: tuple[int, int], strength: float, center: tuple[float, float] | None = None) -> np.ndarray:
    """Radial gain (H, W) float32: 1 at the centre, 1 − strength at the farthest corner.

    A cos⁴-like fall-off approximated by the polynomial 1 − s·r² (Goldman 2010 fits even
    polynomials in r). ``center`` = (cx, cy) px, default the image centre.
    """
    h, w = shape
    cx, cy = _centre(h, w, center)
    return 1.0 - np.float32(strength) * _radius2(h, w, float(cx), float(cy))


@functools.lru_cache(maxsize=4)
def _gain_u8(h: int, w: int, strength: float, cx: float, cy: float) -> np.ndarray:
    g = np.rint(vignetting_gain((h, w), strength, (cx, cy)) * 255).astype(np.uint8)
    g3 = cv2.merge([g, g, g])
    g3.setflags(write=False)
    return g3


def vignetting_u8(image_u8: np.ndarray, strength: float, center=None) -> np.ndarray:
    """uint8 core of :func:`vignetting` (gain quantised to 1/255; the map is cached per size)."""
    if strength == 0:
        return image_u8.copy()
    h, w = image_u8.shape[:2]
    cx, cy = _centre(h, w, center)
    return cv2.multiply(image_u8, _gain_u8(h, w, float(strength), float(cx), float(cy)), scale=1.0 / 255)


def vignetting(image_u8: np.ndarray, strength: float, center=None, name: str | None = None) -> np.ndarray:
    """Darken towards the corners by up to ``strength`` (0–1); (H, W, 3) uint8. 0 is the identity."""
    check_image(image_u8, name)
    s = check_nonneg(strength, "camera.vignetting", name, allow_inf=False)
    if s > 1:
        raise ConfigError(f"{where(name)}: camera.vignetting must be in [0, 1], got {strength}")
    return vignetting_u8(image_u8, s, center)


@functools.lru_cache(maxsize=8)
def _radial_maps(h: int, w: int, scale: float, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps of a magnification by ``scale`` about (cx, cy): dst(p) = src(c + (p − c) / scale)."""
    mx = ((np.arange(w, dtype=np.float64) - cx) / scale + cx).astype(np.float32)
    my = ((np.arange(h, dtype=np.float64) - cy) / scale + cy).astype(np.float32)
    maps = (np.ascontiguousarray(np.broadcast_to(mx[None, :], (h, w))),
            np.ascontiguousarray(np.broadcast_to(my[:, None], (h, w))))
    for m in maps:
        m.setflags(write=False)
    return maps


def chromatic_aberration_u8(image_u8: np.ndarray, k: float, center=None) -> np.ndarray:
    """uint8 core of :func:`chromatic_aberration` (maps cached per size and strength)."""
    if k == 0:
        return image_u8.copy()
    h, w = image_u8.shape[:2]
    cx, cy = _centre(h, w, center)
    out = image_u8.copy()
    for c, scale in ((0, 1.0 + float(k)), (2, 1.0 - float(k))):
        mx, my = _radial_maps(h, w, scale, float(cx), float(cy))
        out[..., c] = cv2.remap(np.ascontiguousarray(image_u8[..., c]), mx, my, cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
    return out


def chromatic_aberration(image_u8: np.ndarray, k: float, center=None, name: str | None = None) -> np.ndarray:
    """Lateral chromatic aberration: red magnified by 1 + k and blue by 1 − k about ``center``.

    The lens images longer wavelengths slightly larger (Boult & Wolberg 1992; Kang 2007), so
    red and blue fringes grow linearly with the distance r from the principal point: a point at
    r lands at r·(1 + k) in red and r·(1 − k) in blue, green stays. Sub-pixel, bilinear
    (``cv2.remap``, 1/32 px interpolation steps); borders replicate. Boxes do not move (the
    green channel, which dominates luminance, stays in place). ``center`` = (cx, cy) px, the
    principal point (default the image centre). (H, W, 3) uint8 → uint8; k = 0 is the identity.
    Typical lenses: |k| of 1e-4 to 2e-3 (0.1 to 1 px at the edge of a 1242 px frame).
    """
    check_image(image_u8, name)
    kk = float(k)
    if not np.isfinite(kk) or abs(kk) >= 0.5:
        raise ConfigError(f"{where(name)}: camera.chromatic_aberration must be finite and |k| < 0.5, got {k}")
    return chromatic_aberration_u8(image_u8, kk, center)


def motion_blur_f32(image: np.ndarray, depth_m: np.ndarray, ego_speed_mps: float, exposure_s: float,
                    intrinsics=None, samples: int = 7) -> np.ndarray:
    """Forward ego-motion blur: radial streaks towards the focus of expansion, length ∝ 1/depth.

    A camera moving forward by s = v·T during the exposure moves a static point at depth z
    and image offset r from the principal point by about r·s/z pixels, radially. The image
    is averaged over ``samples`` positions along that path (``cv2.remap``); sky (+inf) stays.
    Not occlusion-aware (a few-pixel camera effect). ``intrinsics`` = (fx, fy, cx, cy).
    """
    img = image.astype(np.float32, copy=False)
    travel = float(ego_speed_mps) * float(exposure_s)
    if travel == 0:
        return img
    h, w = depth_m.shape
    cx, cy = _centre(h, w, None if intrinsics is None else (float(intrinsics[2]), float(intrinsics[3])))
    k = np.float32(travel) / np.maximum(depth_m, np.float32(travel + 0.5))  # fraction of r, < 1
    xs = np.arange(w, dtype=np.float32)[None, :] - np.float32(cx)
    ys = np.arange(h, dtype=np.float32)[:, None] - np.float32(cy)
    acc = np.zeros_like(img)
    for s in np.linspace(0.0, 1.0, int(samples), dtype=np.float32):
        scale = 1.0 - s * k
        mx = (xs * scale + np.float32(cx)).astype(np.float32)
        my = (ys * scale + np.float32(cy)).astype(np.float32)
        acc += cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return acc / np.float32(samples)


def motion_blur(image_u8: np.ndarray, depth_m: np.ndarray, ego_speed_mps: float, exposure_s: float,
                intrinsics=None, samples: int = 7, name: str | None = None) -> np.ndarray:
    """Ego-motion blur whose streak length scales with 1/depth; (H, W, 3) uint8. Speed 0 = identity."""
    check_image(image_u8, name)
    check_depth(depth_m, image_u8.shape[:2], name)
    check_nonneg(ego_speed_mps, "camera.ego_speed_mps", name, allow_inf=False)
    check_nonneg(exposure_s, "camera.exposure_s", name, allow_inf=False)
    if float(ego_speed_mps) * float(exposure_s) == 0:
        return image_u8.copy()
    return to_u8(motion_blur_f32(image_u8, depth_m, ego_speed_mps, exposure_s, intrinsics, samples))
