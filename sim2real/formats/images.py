"""Image files. Library arrays are RGB ``uint8`` (H, W, 3); OpenCV's BGR stays inside this module.

Every reader is strict: a truncated or corrupt JPEG/PNG is a :class:`DataError` naming the file.
OpenCV alone is not: libjpeg decodes a truncated JPEG to grey (value 128) where data is missing,
prints an unnamed "Premature end of JPEG file" and returns success. So each read first checks the
file's structure with :func:`check_complete` (signature at the start; JPEG end-of-image marker
``FF D9`` / PNG ``IEND`` chunk at the end: the check ultralytics' ``verify_image_label`` also makes
for JPEGs), then decodes with OpenCV (libpng already fails on a truncated or CRC-corrupt PNG).
A bit flip inside JPEG entropy-coded data cannot be detected by any decoder (JPEG has no
checksum); the ingest fingerprints (:mod:`sim2real.fingerprint`) catch files that change.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from sim2real.errors import DataError
from sim2real.io import write_bytes

cv2.setNumThreads(1)  # frames are parallelised across processes; nested threads only contend


JPEG_SOI, JPEG_EOI = b"\xff\xd8\xff", b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the last chunk: length 0, type, CRC


def check_complete(path: str | Path) -> str:
    """Check that ``path`` is a whole JPEG or PNG file (start and end markers); return "jpeg" or "png".

    Reads 8 bytes at each end. A JPEG must end with its end-of-image marker (zero padding after it
    is tolerated), a PNG with its ``IEND`` chunk. Raises DataError naming the file otherwise.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(size - 64, 0))
            tail = fh.read()
    except FileNotFoundError:
        raise DataError(path, "image not found") from None
    except IsADirectoryError:
        raise DataError(path, "expected an image file, found a folder") from None
    except OSError as exc:
        raise DataError(path, f"cannot read ({exc.strerror or exc})") from None
    if head.startswith(JPEG_SOI):
        if not tail.rstrip(b"\x00").endswith(JPEG_EOI):
            raise DataError(path, f"unreadable image: truncated or corrupt JPEG (no end-of-image marker FF D9 at the end of its {size} bytes)")
        return "jpeg"
    if head.startswith(PNG_SIGNATURE):
        if not tail.endswith(PNG_IEND):
            raise DataError(path, f"unreadable image: truncated or corrupt PNG (no IEND chunk at the end of its {size} bytes)")
        _check_png_chunks(path)
        return "png"
    if not head:
        raise DataError(path, "unreadable image: empty file (0 bytes)")
    raise DataError(path, f"unreadable image: not a JPEG or PNG file (starts with bytes {head[:4].hex(' ')})")


def _check_png_chunks(path: Path) -> None:
    """Verify every PNG chunk's CRC-32 (PNG spec 5.3). Decoders do not all check the image-data
    chunks: a flipped byte inside IDAT can decode to wrong pixels without an error. About 1 ms a
    1242x375 16-bit depth map (zlib.crc32)."""
    data = path.read_bytes()
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 8 + length
        if end + 4 > len(data):
            raise DataError(path, f"unreadable image: truncated or corrupt PNG (chunk at byte {pos} runs past the end)")
        if zlib.crc32(data[pos + 4:end]) != int.from_bytes(data[end:end + 4], "big"):
            kind = data[pos + 4:pos + 8].decode("latin-1")
            raise DataError(path, f"unreadable image: corrupt PNG (CRC mismatch in the {kind} chunk at byte {pos})")
        if data[pos + 4:pos + 8] == b"IEND":
            return
        pos = end + 4
    raise DataError(path, "unreadable image: truncated or corrupt PNG (no IEND chunk)")


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) read from the file header after :func:`check_complete`, without decoding the pixels."""
    path = Path(path)
    check_complete(path)
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception as exc:  # PIL raises several types for broken files
        raise DataError(path, f"unreadable image ({type(exc).__name__}: {exc})") from None


def read_rgb(path: str | Path) -> np.ndarray:
    """Read a colour image as RGB uint8 (H, W, 3); a truncated or corrupt file is a DataError."""
    path = Path(path)
    kind = check_complete(path)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(path, f"unreadable image: corrupt {kind.upper()} (the decoder rejected it)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_gray_any(path: str | Path) -> np.ndarray:
    """Read a one-channel image keeping its bit depth (uint8 or uint16); palette PNGs give indices."""
    path = Path(path)
    check_complete(path)
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
    """Write RGB uint8 as JPEG (by extension .jpg/.jpeg) or PNG; deterministic bytes.

    Encoded in memory (the same bytes as ``cv2.imwrite``) and written with Python's file API, so
    a full disk or a read-only folder is a :class:`~sim2real.errors.StorageError` that says so
    and names the file, instead of OpenCV's bare ``False``.
    """
    path = Path(path)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"write_image expects (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ext = path.suffix.lower()
    if ext in (".jpg", ".jpeg"):
        _write_encoded(path, ".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:
        _write_encoded(path, ".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])


def write_gray(path: str | Path, arr: np.ndarray) -> None:
    """Write a one-channel uint8 or uint16 PNG."""
    path = Path(path)
    if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_gray expects (H, W) uint8/uint16, got {arr.shape} {arr.dtype}")
    _write_encoded(path, ".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, 3])


def _write_encoded(path: Path, ext: str, arr: np.ndarray, options: list[int]) -> None:
    ok, buf = cv2.imencode(ext, arr, options)
    if not ok:
        raise RuntimeError(f"{path}: OpenCV could not encode a {arr.shape} {arr.dtype} image as {ext}")
    write_bytes(path, buf.data)


def encode_jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """JPEG-compress and decode in memory (a camera/compression effect)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
