"""Exposure, tone curve and white balance in linear light; contrast on the encoded signal.

An 8-bit frame holds sRGB-encoded values; light adds and scales linearly only after decoding.
Each effect here is a per-channel function of the 8-bit value, so all four compose into one
(256, 1, 3) lookup table and one ``cv2.LUT`` pass per frame:

    v' = clip( (encode( clip(g_c · 2^EV · decode(v), 0, 1) ^ γ ) − ½) · k + ½, 0, 1 )

with g_c the white-balance gain of channel c (green = 1), EV the exposure in stops, γ the
tone-curve exponent (1 = the camera's own sRGB curve, > 1 darker mid-tones and more contrast
in the highlights, < 1 brighter mid-tones) and k the contrast about mid-grey of the encoded
signal (1 = none, < 1 flatter, as a camera's "contrast" control or a veiling flare that lifts
the blacks). Gains above 1 saturate at white, as a sensor does.

White balance either comes as direct red/blue gains or from a colour temperature: the cast a
camera balanced for ``reference_k`` records under a black-body illuminant of ``temperature_k``,
i.e. the ratio of the two illuminants' linear sRGB colours (von Kries), with the black body's
chromaticity from Kim et al.'s cubic-spline approximation of the Planckian locus (1667–25000 K).

References
----------
IEC 61966-2-1:1999, "Multimedia systems and equipment – Colour measurement and management –
Part 2-1: Default RGB colour space – sRGB" (transfer function and the XYZ → linear sRGB matrix).
Kim, Y.-S., Cho, B.-H., Kang, B.-S., Hong, D.-I., "Color temperature conversion system and
method using the same", US patent 7,024,034 (2006); Kang, B., et al., "Design of advanced
color temperature control system for HDTV applications", J. Korean Physical Society 41(6),
865–871, 2002 (the Planckian-locus splines).
von Kries, J., "Die Gesichtsempfindungen", Handbuch der Physiologie des Menschen 3, 1905
(per-channel gain model of chromatic adaptation).
Reinhard, E., et al., "Photographic tone reproduction for digital images", SIGGRAPH 2002
(exposure in stops, tone curves applied to linear luminance).
Poynton, C., "Digital Video and HD: Algorithms and Interfaces", 2nd ed., Morgan Kaufmann 2012,
ch. "Brightness and contrast controls" (contrast as a gain on the gamma-encoded signal).
Carlson, A., Skinner, K. A., Vasudevan, R., Johnson-Roberson, M., "Modeling camera effects to
improve visual learning from synthetic data", ECCV Workshops 2018 (exposure and colour balance
as sensor effects for sim-to-real).
"""
from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from sim2real.errors import ConfigError
from sim2real.params import TEMPERATURE_RANGE_K
from sim2real.physics._checks import check_image, check_positive, where

#: XYZ (D65) → linear sRGB, IEC 61966-2-1
XYZ_TO_SRGB = np.array([[3.2406, -1.5372, -0.4986],
                        [-0.9689, 1.8758, 0.0415],
                        [0.0557, -0.2040, 1.0570]])
REFERENCE_K = 6504.0  # the correlated colour temperature of D65, sRGB's white


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] → linear light in [0, 1] (IEC 61966-2-1), float64."""
    v = np.asarray(v, dtype=np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] → sRGB-encoded values in [0, 1] (IEC 61966-2-1), float64."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


def planckian_xy(temperature_k: float) -> tuple[float, float]:
    """CIE 1931 (x, y) chromaticity of a black body at ``temperature_k`` (1667–25000 K).

    Kim et al.'s cubic splines (J. Korean Phys. Soc. 2002): x(T) in 1/T, then y(x) per range;
    within about 1e-3 of the exact locus.
    """
    t = float(temperature_k)
    lo, hi = TEMPERATURE_RANGE_K
    if not lo <= t <= hi:
        raise ConfigError(f"camera.wb_temperature_k must be within {lo:.0f}..{hi:.0f} K, got {temperature_k}")
    if t <= 4000:
        x = -0.2661239e9 / t ** 3 - 0.2343589e6 / t ** 2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t ** 3 + 2.1070379e6 / t ** 2 + 0.2226347e3 / t + 0.240390
    if t <= 2222:
        y = -1.1063814 * x ** 3 - 1.34811020 * x ** 2 + 2.18555832 * x - 0.20219683
    elif t <= 4000:
        y = -0.9549476 * x ** 3 - 1.37418593 * x ** 2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x ** 3 - 5.87338670 * x ** 2 + 3.75112997 * x - 0.37001483
    return float(x), float(y)


def _illuminant_rgb(temperature_k: float) -> np.ndarray:
    x, y = planckian_xy(temperature_k)
    return XYZ_TO_SRGB @ np.array([x / y, 1.0, (1.0 - x - y) / y])


def temperature_gains(temperature_k: float, reference_k: float = REFERENCE_K) -> np.ndarray:
    """Linear-light RGB gains (3,) float64, green = 1, of a black-body illuminant at
    ``temperature_k`` recorded by a camera white-balanced for ``reference_k`` (von Kries:
    the ratio of the two illuminants' linear sRGB colours). Below the reference the cast is
    warm (red gain > 1, blue < 1); ``temperature_k == reference_k`` gives (1, 1, 1)."""
    ratio = _illuminant_rgb(temperature_k) / _illuminant_rgb(reference_k)
    return ratio / ratio[1]


def white_balance_gains(gain_r: float | None = None, gain_b: float | None = None,
                        temperature_k: float | None = None, reference_k: float = REFERENCE_K) -> np.ndarray:
    """The (3,) linear-light gains of the ``camera.wb_*`` settings: direct red/blue gains
    (None = 1) times the colour-temperature cast when ``temperature_k`` is set. Green = 1."""
    g = np.array([1.0 if gain_r is None else float(gain_r), 1.0, 1.0 if gain_b is None else float(gain_b)])
    if g[0] <= 0 or g[2] <= 0 or not np.isfinite(g).all():
        raise ConfigError(f"camera.wb_gain_r / wb_gain_b must be > 0, got {gain_r}, {gain_b}")
    if temperature_k is not None:
        g = g * temperature_gains(temperature_k, reference_k)
    return g


@functools.lru_cache(maxsize=64)
def _lut(gains: tuple[float, float, float], exposure_stops: float, tone_gamma: float, contrast: float) -> np.ndarray:
    v = np.arange(256, dtype=np.float64) / 255.0
    lin = srgb_to_linear(v)[:, None] * np.asarray(gains)[None, :] * 2.0 ** exposure_stops
    out = linear_to_srgb(np.clip(lin, 0.0, 1.0) ** tone_gamma)
    if contrast != 1.0:
        out = np.clip((out - 0.5) * contrast + 0.5, 0.0, 1.0)
    lut = np.rint(out * 255.0).astype(np.uint8).reshape(256, 1, 3)
    lut.setflags(write=False)
    return lut


def colour_lut(gains_rgb=(1.0, 1.0, 1.0), exposure_stops: float = 0.0, tone_gamma: float = 1.0,
               contrast: float = 1.0) -> np.ndarray:
    """The (256, 1, 3) uint8 table of module docstring's formula (cached per setting)."""
    g = tuple(float(x) for x in np.asarray(gains_rgb, dtype=np.float64).reshape(3))
    return _lut(g, float(exposure_stops), float(tone_gamma), float(contrast))


def invert_colour(rgb_u8, gains_rgb=(1.0, 1.0, 1.0), exposure_stops: float = 0.0, tone_gamma: float = 1.0,
                  contrast: float = 1.0) -> np.ndarray:
    """The input levels (3,) float64 that :func:`colour_u8` maps to the output levels ``rgb_u8``
    (3,): per channel, linear interpolation on the inverse of its (monotone) table, clipped to the
    table's range (an output the table cannot reach gives the nearest end)."""
    lut = colour_lut(gains_rgb, exposure_stops, tone_gamma, contrast).reshape(256, 3).astype(np.float64)
    x = np.arange(256, dtype=np.float64)
    return np.array([np.interp(float(v), lut[:, c], x) for c, v in enumerate(np.asarray(rgb_u8, np.float64).reshape(3))])


def is_neutral(gains_rgb, exposure_stops: float, tone_gamma: float, contrast: float = 1.0) -> bool:
    return (bool(np.all(np.asarray(gains_rgb, dtype=np.float64) == 1.0)) and exposure_stops == 0 and tone_gamma == 1
            and contrast == 1)


def colour_u8(image_u8: np.ndarray, gains_rgb=(1.0, 1.0, 1.0), exposure_stops: float = 0.0,
              tone_gamma: float = 1.0, contrast: float = 1.0) -> np.ndarray:
    """uint8 core: exposure, white balance, tone and contrast in one ``cv2.LUT`` pass; neutral = identical copy."""
    if is_neutral(gains_rgb, exposure_stops, tone_gamma, contrast):
        return image_u8.copy()
    return cv2.LUT(image_u8, colour_lut(gains_rgb, exposure_stops, tone_gamma, contrast))


def exposure_tone(image_u8: np.ndarray, exposure_stops: float = 0.0, tone_gamma: float = 1.0,
                  name: str | None = None) -> np.ndarray:
    """Exposure change of ``exposure_stops`` (linear gain 2^EV, clipped at white) followed by the
    tone curve x ↦ x^``tone_gamma`` in linear light; (H, W, 3) uint8 → uint8. 0 stops and γ = 1
    are the identity. Brighter with more stops; darker mid-tones with larger γ."""
    check_image(image_u8, name)
    ev = float(exposure_stops)
    if not math.isfinite(ev):
        raise ConfigError(f"{where(name)}: camera.exposure_stops must be finite, got {exposure_stops}")
    check_positive(tone_gamma, "camera.tone_gamma", name)
    return colour_u8(image_u8, (1.0, 1.0, 1.0), ev, float(tone_gamma))


def display_contrast(image_u8: np.ndarray, contrast: float = 1.0, name: str | None = None) -> np.ndarray:
    """Contrast ``contrast`` about mid-grey of the encoded signal, v ↦ (v − ½)·k + ½ clipped to
    [0, 1]; (H, W, 3) uint8 → uint8. 1 is the identity; < 1 flattens towards mid-grey (a lifted
    black level), > 1 steepens. Applied after the tone curve, as an ISP's last tone step."""
    check_image(image_u8, name)
    check_positive(contrast, "camera.contrast", name)
    return colour_u8(image_u8, (1.0, 1.0, 1.0), 0.0, 1.0, float(contrast))


def white_balance(image_u8: np.ndarray, gain_r: float | None = None, gain_b: float | None = None,
                  temperature_k: float | None = None, reference_k: float = REFERENCE_K,
                  name: str | None = None) -> np.ndarray:
    """Per-channel gains in linear light (green = 1) from direct red/blue gains and/or a colour
    temperature (see :func:`temperature_gains`); (H, W, 3) uint8 → uint8. Unit gains (and no
    temperature, or ``temperature_k == reference_k``) are the identity."""
    check_image(image_u8, name)
    return colour_u8(image_u8, white_balance_gains(gain_r, gain_b, temperature_k, reference_k))
