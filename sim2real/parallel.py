"""The one per-frame map that every per-frame stage uses.

``map_frames(fn, items, workers=...)`` applies ``fn(item, **kwargs)`` to each item, in order,
in ``workers`` local processes (1 = in this process), with a tqdm progress bar. An exception in
a worker is re-raised here as :class:`~sim2real.errors.FrameError` naming the frame id (the
original :class:`~sim2real.errors.DataError` is kept as is, since it already names its file).
Results come back as an iterator in input order, so the caller can stream them to disk and
memory stays flat in the number of frames.

The backend is chosen in one place (:func:`map_frames`) so a distributed scheduler can slot in.
"""
from __future__ import annotations

import functools
import multiprocessing as mp
import os
from typing import Any, Callable, Iterable, Iterator, Sequence

from tqdm import tqdm

from sim2real.errors import DataError, FrameError


def _frame_id(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("frame_id", item))
    return str(getattr(item, "frame_id", item))


def _call(fn: Callable, kwargs: dict, item: Any):
    try:
        return fn(item, **kwargs)
    except (DataError, FrameError):
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised with the frame id
        raise FrameError(_frame_id(item), f"{type(exc).__name__}: {exc}") from exc


def _progress(total: int | None, desc: str, disable: bool | None):
    if disable is None:
        disable = os.environ.get("SIM2REAL_NO_PROGRESS") == "1"
    return tqdm(total=total, desc=desc, unit="frame", disable=disable, dynamic_ncols=True)


def map_frames(
    fn: Callable,
    items: Sequence | Iterable,
    *,
    workers: int = 1,
    desc: str = "frames",
    chunksize: int = 1,
    progress: bool | None = None,
    **kwargs,
) -> Iterator:
    """Yield ``fn(item, **kwargs)`` for each item, in input order.

    Parameters
    ----------
    fn : a picklable top-level function taking one item plus keyword arguments.
    items : the frames (dicts or records with a ``frame_id``); consumed lazily.
    workers : number of local processes; 1 runs in this process (easiest to debug).
    """
    total = len(items) if hasattr(items, "__len__") else None
    call = functools.partial(_call, fn, kwargs)
    bar = _progress(total, desc, None if progress is None else not progress)
    try:
        if workers <= 1:
            for item in items:
                yield call(item)
                bar.update(1)
            return
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(processes=workers) as pool:
            for result in pool.imap(call, items, chunksize=chunksize):
                yield result
                bar.update(1)
    finally:
        bar.close()
