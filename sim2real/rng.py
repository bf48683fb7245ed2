"""The one way to seed a random generator per item: reproducible, independent of order and workers.

Every per-frame draw in the pipeline (physics values, style pairing, the mix selection, the demo
world) comes from :func:`frame_rng` or :func:`keyed_rng`, so a frame rendered alone, in another
order or on another worker gets the same numbers.
"""
from __future__ import annotations

import zlib

import numpy as np


def keyed_rng(*keys: int | str) -> np.random.Generator:
    """A generator seeded by integers and strings (strings via their CRC-32)."""
    return np.random.default_rng([k if isinstance(k, int) else zlib.crc32(str(k).encode()) for k in keys])


def frame_rng(seed: int, frame_id: str) -> np.random.Generator:
    """The per-frame generator: seeded by (global seed, CRC-32 of the frame id)."""
    return keyed_rng(int(seed), str(frame_id))
