"""Input checks shared by the physics functions: fail early, name the frame."""
from __future__ import annotations

import numpy as np

from sim2real.errors import ConfigError, DataError


def where(name: str | None) -> str:
    return f"frame {name}" if name else "<array>"


def check_image(image_u8: np.ndarray, name: str | None = None) -> None:
    """(H, W, 3) uint8 or DataError."""
    if not isinstance(image_u8, np.ndarray) or image_u8.dtype != np.uint8 or image_u8.ndim != 3 \
            or image_u8.shape[2] != 3:
        shape = getattr(image_u8, "shape", None)
        dtype = getattr(image_u8, "dtype", type(image_u8).__name__)
        raise DataError(where(name), f"image must be (H, W, 3) uint8 RGB, got {shape} {dtype}")


def check_depth(depth_m: np.ndarray, shape: tuple[int, int], name: str | None = None) -> None:
    """(H, W) float z-depth in metres, same size as the image, no NaN, no negatives; +inf = sky."""
    if not isinstance(depth_m, np.ndarray) or depth_m.ndim != 2:
        raise DataError(where(name), f"depth must be (H, W), got {getattr(depth_m, 'shape', None)}")
    if depth_m.dtype.kind != "f":
        raise DataError(where(name), f"depth must be float metres (read 16-bit PNGs with "
                                     f"sim2real.formats.vkitti2.read_depth_m), got {depth_m.dtype}; "
                                     "8-bit depth is not metric")
    if depth_m.shape != tuple(shape):
        raise DataError(where(name), f"depth size {depth_m.shape[1]}x{depth_m.shape[0]} does not match "
                                     f"image size {shape[1]}x{shape[0]}")
    if np.isnan(depth_m).any():
        raise DataError(where(name), f"depth has {int(np.isnan(depth_m).sum())} NaN pixels")
    if (depth_m < 0).any():
        raise DataError(where(name), "depth has negative values")


def check_mask(mask: np.ndarray, shape: tuple[int, int], what: str, name: str | None = None) -> None:
    if not isinstance(mask, np.ndarray) or mask.shape != tuple(shape):
        raise DataError(where(name), f"{what} size {getattr(mask, 'shape', None)} does not match "
                                     f"image size {tuple(shape)}")


def check_nonneg(value: float, key: str, name: str | None = None, allow_inf: bool = True) -> float:
    v = float(value)
    if np.isnan(v) or v < 0 or (not allow_inf and np.isinf(v)):
        raise ConfigError(f"{where(name)}: {key} must be >= 0{'' if allow_inf else ' and finite'}, got {value}")
    return v


def check_positive(value: float, key: str, name: str | None = None) -> float:
    v = float(value)
    if np.isnan(v) or v <= 0:
        raise ConfigError(f"{where(name)}: {key} must be > 0, got {value}")
    return v
