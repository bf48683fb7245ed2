"""Image files. Library arrays are RGB ``uint8`` (H, W, 3); OpenCV's BGR stays inside this module."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from sim2real.errors import DataError

cv2.setNumThreads(1)  # frames are parallelised across processes; nested threads only contend


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) read from the file header, without decoding the pixels."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image not found")
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception as exc:  # PIL raises several types for broken files
        raise DataError(path, f"unreadable image ({type(exc).__name__}: {exc})") from None


def read_rgb(path: str | Path) -> np.ndarray:
    """Read a colour image as RGB uint8 (H, W, 3)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image not found")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(path, "unreadable image (not a decodable JPEG/PNG)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_gray_any(path: str | Path) -> np.ndarray:
    """Read a one-channel image keeping its bit depth (uint8 or uint16); palette PNGs give indices."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image not found")
    try:
        with Image.open(path) as im:
            if im.mode in ("P", "L"):
                return np.asarray(im, dtype=np.uint8).copy()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im)
                return arr.astype(np.uint16) if arr.max(initial=0) <= 65535 else arr
            raise DataError(path, f"expected a one-channel image, got mode {im.mode}")
    except DataError:
        raise
    except Exception as exc:
        raise DataError(path, f"unreadable image ({type(exc).__name__}: {exc})") from None


def write_image(path: str | Path, rgb: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write RGB uint8 as JPEG (by extension .jpg/.jpeg) or PNG; deterministic bytes."""
    path = Path(path)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"write_image expects (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ext = path.suffix.lower()
    if ext in (".jpg", ".jpeg"):
        ok = cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:
        ok = cv2.imwrite(str(path), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise OSError(f"{path}: could not write image")


def write_gray(path: str | Path, arr: np.ndarray) -> None:
    """Write a one-channel uint8 or uint16 PNG."""
    path = Path(path)
    if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_gray expects (H, W) uint8/uint16, got {arr.shape} {arr.dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), arr, [cv2.IMWRITE_PNG_COMPRESSION, 3]):
        raise OSError(f"{path}: could not write image")


def encode_jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """JPEG-compress and decode in memory (a camera/compression effect)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
