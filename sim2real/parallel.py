"""The one per-frame map that every per-frame stage uses.

``map_frames(fn, items, workers=...)`` applies ``fn(item, **kwargs)`` to each item, in order,
with a tqdm progress bar, and yields the results in input order, so the caller can stream them
to disk and memory stays flat in the number of frames. Three things are chosen here, in one
place, so that every per-frame stage gets them by passing keyword options:

* **Backend** (``scheduler``): ``"local"`` runs ``workers`` local processes (1 = in this
  process, easiest to debug); ``"tcp://host:port"`` (or a ``distributed.Client``) sends the work
  to a Dask distributed cluster. Work is submitted in batches of ``batch_size`` items with at
  most ``max_in_flight`` batches submitted and not yet consumed, so memory on the client and on
  the scheduler stays flat whatever the number of frames. Workers write their files themselves
  (``fn`` writes into the stage's temporary output folder, which must then be on a file system
  the workers share); only the small per-frame records travel back.
* **Errors** (``on_error``): ``"fail"`` (default) re-raises an exception of a frame as
  :class:`~sim2real.errors.FrameError` naming the frame id (a :class:`~sim2real.errors.DataError`
  is kept as is, since it already names its file); ``"skip"`` yields a :class:`Skipped` marker in
  the place of a frame whose *input* is bad (a ``DataError``) and stops the map, as ``fail`` does,
  on anything else: a config error, a programming error, a full or read-only disk
  (:func:`is_system_error`). More skipped frames than ``max_skip_fraction`` (params
  ``data.max_skip_fraction``), or every frame, stop the map too (:func:`check_skips`). Stages
  count markers with :class:`SkipLog` and list them in their report, so frame counts never
  shrink silently, and a stage that would write no frame fails.
* **Resume** (``resume_dir``): finished frames are kept in a scratch folder outside the DVC
  output, keyed by a hash of ``fn`` and its keyword arguments (the stage params) and by a
  fingerprint of each item (its fields and the size/mtime of the files it names). After a crash,
  a rerun links their files into the new temporary output and returns their stored records
  instead of recomputing them. See :func:`map_frames` for the contract ``fn`` must follow.

References
----------
Dask distributed, "Futures" and "Managing memory" (bounded submission with ``as_completed``-style
back-pressure): https://distributed.dask.org/en/stable/
"""
from __future__ import annotations

import collections
import errno
import hashlib
import json
import multiprocessing as mp
import os
import pickle
import re
import shutil
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
from tqdm import tqdm

from sim2real.errors import ConfigError, DataError, FrameError
from sim2real.io import link_or_copy

ON_ERROR = ("fail", "skip")
T = TypeVar("T")
DEFAULT_MAX_SKIP_FRACTION = 0.05  # params data.max_skip_fraction when absent
#: errnos of a failing machine, not of a bad frame: never skipped
SYSTEM_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENOMEM, errno.EMFILE, errno.ENFILE,
                           errno.EIO})
DEFAULT_BATCH_SIZE = 8
RESULT_FILE = "result.pkl"
FILES_DIR = "files"


# ----------------------------------------------------------------------------- skip markers
@dataclass(frozen=True)
class Skipped:
    """Placeholder yielded for a frame that failed under ``on_error="skip"``."""

    frame_id: str
    message: str

    def as_dict(self) -> dict:
        return {"frame_id": self.frame_id, "message": self.message}


@dataclass
class SkipLog:
    """Count the frames a stage skipped, for its report.

    Usage::

        skips = SkipLog()
        for res in map_frames(fn, items, on_error=on_error, ...):
            if skips.take(res):
                continue
            rows.append(res)
        report.update(skips.report(frames_in=len(items), frames_out=len(rows)))
    """

    skipped: list[Skipped] = field(default_factory=list)
    name: str = "frames"  #: names the stage (or input) in the error when nothing is left to write

    def take(self, result: Any) -> bool:
        """True (and recorded) when ``result`` is a :class:`Skipped` marker."""
        if isinstance(result, Skipped):
            self.skipped.append(result)
            return True
        return False

    def report(self, frames_in: int, frames_out: int) -> dict:
        """``{"frames_in", "frames_out", "frames_skipped", "skipped": [...]}``; checks the sum.

        Raises RuntimeError when ``frames_in != frames_out + frames_skipped`` (a frame lost
        without a trace is a bug, never a result) and DataError when frames came in but none is
        left to write (an empty dataset is never a result).
        """
        if int(frames_in) != int(frames_out) + len(self.skipped):
            raise RuntimeError(f"frame count mismatch: {frames_in} in, {frames_out} written, "
                               f"{len(self.skipped)} skipped")
        if int(frames_in) and not int(frames_out):
            first = f"; first: {self.skipped[0].message}" if self.skipped else ""
            raise DataError(self.name, f"no frame left to write ({frames_in} in, {len(self.skipped)} skipped){first}")
        return {"frames_in": int(frames_in), "frames_out": int(frames_out),
                "frames_skipped": len(self.skipped), "skipped": [s.as_dict() for s in self.skipped]}


def check_max_skip_fraction(value: Any) -> float:
    """Validate ``data.max_skip_fraction`` (a number in [0, 1]; null = the default 0.05)."""
    if value is None:
        return DEFAULT_MAX_SKIP_FRACTION
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = float("nan")
    if isinstance(value, bool) or not 0.0 <= f <= 1.0:
        raise ConfigError(f"params.yaml: data.max_skip_fraction must be a number in [0, 1], got {value!r}")
    return f


def check_skips(skipped: int, total: int, max_fraction: float, first: str = "", *, where: str | None = None,
                final: bool = True) -> None:
    """Raise DataError when more than ``max_fraction`` of ``total`` frames (or, once ``final``,
    every one of them) were skipped under ``on_error: skip``; ``first`` is the first skip's message."""
    if not skipped:
        return
    if skipped > max_fraction * total or (final and skipped >= total):
        why = "every frame" if skipped >= total else f"more than data.max_skip_fraction={max_fraction:g}"
        raise DataError(where, f"{skipped} of {total} frames skipped under data.on_error=skip "
                               f"({100.0 * skipped / max(total, 1):.0f}%: {why}); first: {first}")


def is_system_error(exc: BaseException) -> bool:
    """True when ``exc`` or an exception it was raised from is an OSError of the machine (disk
    full, read-only file system, I/O error, out of memory or file handles): never a bad frame."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno in SYSTEM_ERRNOS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def check_on_error(value: str) -> str:
    """Validate ``data.on_error`` (``fail`` | ``skip``); ConfigError otherwise."""
    if value not in ON_ERROR:
        raise ConfigError(f"params.yaml: data.on_error must be one of {', '.join(ON_ERROR)}, got {value!r}")
    return value


# ----------------------------------------------------------------------------- per-item call
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


@dataclass(frozen=True)
class _Resume:
    """What a worker needs to resume frames: scratch folder, write-dir argument, folder skeleton."""

    root: str            # <resume_dir>/<params hash>
    write_arg: str       # name of fn's keyword argument holding the folder it writes into
    skeleton: tuple[str, ...]  # sub-folders of the write dir that exist before the first frame


class _Runner:
    """Picklable per-item callable: resume lookup, the call itself, error policy."""

    def __init__(self, fn: Callable, kwargs: dict, on_error: str, resume: _Resume | None):
        self.fn, self.kwargs, self.on_error, self.resume = fn, kwargs, on_error, resume

    def __call__(self, item: Any):
        try:
            if self.resume is None:
                return _call(self.fn, self.kwargs, item)
            return self._resumable(item)
        except DataError as exc:  # bad input of this frame: the only thing "skip" may skip
            if self.on_error == "skip" and not is_system_error(exc):
                return Skipped(_frame_id(item), str(exc))
            raise

    def batch(self, items: list) -> list:
        return [self(item) for item in items]

    def _resumable(self, item: Any):
        r = self.resume
        fid = _frame_id(item)
        frame_dir = Path(r.root) / _safe_name(fid)
        finger = item_fingerprint(item)
        write_dir = Path(self.kwargs[r.write_arg])
        done = frame_dir / RESULT_FILE
        if done.is_file():
            try:
                with done.open("rb") as fh:
                    stored = pickle.load(fh)  # written below by this code, in the repo's own scratch
            except (OSError, pickle.UnpicklingError, EOFError):
                stored = None
            if stored is not None and stored.get("fingerprint") == finger:
                _merge_tree(frame_dir / FILES_DIR, write_dir)
                return stored["result"]
        if frame_dir.exists():
            shutil.rmtree(frame_dir)
        files = frame_dir / FILES_DIR
        for sub in r.skeleton:
            (files / sub).mkdir(parents=True, exist_ok=True)
        files.mkdir(parents=True, exist_ok=True)
        result = _call(self.fn, {**self.kwargs, r.write_arg: str(files)}, item)
        tmp = frame_dir / f".{RESULT_FILE}.tmp"
        with tmp.open("wb") as fh:
            pickle.dump({"fingerprint": finger, "frame_id": fid, "result": result}, fh, protocol=4)
        # the frame counts as finished only from here on (atomic rename; a killed process leaves
        # no result file; no fsync: after an OS crash, delete .sim2real/scratch)
        os.replace(tmp, done)
        _merge_tree(files, write_dir)
        return result


# ----------------------------------------------------------------------------- resume helpers
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


def _safe_name(frame_id: str) -> str:
    """A frame id usable as one folder name (ids with other characters are hashed)."""
    if _SAFE.match(frame_id):
        return frame_id
    return "id-" + hashlib.sha256(frame_id.encode()).hexdigest()[:24]


def _merge_tree(src: Path, dst: Path) -> None:
    """Hard-link (or copy) every file under ``src`` to the same relative path under ``dst``."""
    for dirpath, _dirs, files in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        target = dst / rel
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            link_or_copy(Path(dirpath) / name, target / name, replace=True)


def _skeleton(write_dir: Path, max_dirs: int = 1000) -> tuple[str, ...]:
    """Sub-folders that exist in ``write_dir`` now (before any frame), relative, sorted."""
    out = []
    for dirpath, dirs, _files in os.walk(write_dir):
        for d in dirs:
            out.append(str((Path(dirpath) / d).relative_to(write_dir)))
            if len(out) >= max_dirs:
                return tuple(sorted(out))
    return tuple(sorted(out))


def _canonical(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return {"ndarray": hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest(),
                "shape": list(obj.shape), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if hasattr(obj, "__dataclass_fields__"):
        return {"dataclass": type(obj).__qualname__,
                "fields": _canonical({k: getattr(obj, k) for k in obj.__dataclass_fields__})}
    raise TypeError(type(obj).__name__)


def stable_hash(obj: Any) -> str:
    """SHA-256 (hex, 16 chars) of nested dicts/lists/str/numbers/Paths/arrays/dataclasses.

    Raises ConfigError for anything else (e.g. a model object): pass ``params_hash`` instead.
    """
    try:
        text = json.dumps(_canonical(obj), sort_keys=True, allow_nan=True, separators=(",", ":"))
    except TypeError as exc:
        raise ConfigError(f"resume: cannot hash a {exc} argument; pass params_hash= explicitly") from None
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def item_fingerprint(item: Any) -> str:
    """Hash of an item's fields plus size and mtime of every existing file a string field names.

    A frame whose input files changed (e.g. a DVC checkout of other data) is recomputed.
    """
    try:
        base = stable_hash(item)
    except ConfigError:
        base = hashlib.sha256(repr(item).encode()).hexdigest()[:16]
    values = item.values() if isinstance(item, dict) else (item if isinstance(item, (list, tuple)) else ())
    stats = []
    for v in values:
        if isinstance(v, (str, Path)) and str(v) and len(str(v)) < 4096:
            try:
                st = os.stat(v)
            except (OSError, ValueError):
                continue
            if not os.path.isdir(v):
                stats.append((str(v), st.st_size, st.st_mtime_ns))
    return hashlib.sha256(f"{base}|{stats}".encode()).hexdigest()[:24]


def params_hash_for(fn: Callable, kwargs: dict, write_arg: str) -> str:
    """Default resume key: ``fn``'s module and name plus its keyword arguments (``write_arg`` excluded)."""
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
    return stable_hash({"fn": name, "kwargs": {k: v for k, v in kwargs.items() if k != write_arg}})


def _prepare_resume(resume_dir: str | Path, params_hash: str | None, fn: Callable, kwargs: dict,
                    write_arg: str) -> _Resume:
    if write_arg not in kwargs:
        raise ConfigError(f"resume: fn must take its output folder as keyword '{write_arg}' "
                          f"(set resume_write_arg= to the name it uses)")
    key = params_hash or params_hash_for(fn, kwargs, write_arg)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", key):
        raise ConfigError(f"resume: params_hash must be 1-64 characters [A-Za-z0-9_-], got {key!r}")
    resume_dir = Path(resume_dir)
    resume_dir.mkdir(parents=True, exist_ok=True)
    for old in resume_dir.iterdir():  # results for other params can never be reused: drop them
        if old.name != key and old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
    root = resume_dir / key
    root.mkdir(exist_ok=True)
    return _Resume(str(root.resolve()), write_arg, _skeleton(Path(kwargs[write_arg])))


# ----------------------------------------------------------------------------- backends
def _progress(total: int | None, desc: str, disable: bool | None):
    if disable is None:
        disable = os.environ.get("SIM2REAL_NO_PROGRESS") == "1"
    return tqdm(total=total, desc=desc, unit="frame", disable=disable, dynamic_ncols=True)


def _sized(items: Iterable, frames_per_item: Callable[[Any], int], sizes: collections.deque) -> Iterator:
    """``items``, appending each one's frame count to ``sizes`` as it is handed out (results come
    back in the same order: the progress bar pops one count per result)."""
    for item in items:
        sizes.append(int(frames_per_item(item)))
        yield item


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _run_batch(runner: _Runner, batch: list) -> list:
    return runner.batch(batch)


def is_distributed(scheduler: Any) -> bool:
    """True for a ``tcp://``/``tls://``/``inproc://`` address or a ``distributed.Client``."""
    if scheduler is None or scheduler == "local":
        return False
    if isinstance(scheduler, str):
        if re.match(r"^(tcp|tls|inproc)://", scheduler):
            return True
        raise ConfigError(f"params.yaml: compute.scheduler must be 'local' or 'tcp://host:port', got {scheduler!r}")
    return hasattr(scheduler, "submit") and hasattr(scheduler, "scatter")


def _dask_map(runner: _Runner, items: Iterable, scheduler: Any, batch_size: int,
              max_in_flight: int | None) -> Iterator:
    """Yield results in input order from a Dask cluster, at most ``max_in_flight`` batches pending."""
    from distributed import Client

    own = isinstance(scheduler, str)
    if own:
        try:
            client = Client(scheduler, timeout="30s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"compute.scheduler={scheduler!r}: cannot connect to the Dask scheduler "
                              f"({type(exc).__name__}: {exc})") from None
    else:
        client = scheduler
    pending: collections.deque = collections.deque()
    try:
        if max_in_flight is None:
            max_in_flight = max(2, 2 * sum(client.nthreads().values()))
        [runner_f] = client.scatter([runner], broadcast=True, hash=False)
        batches = _batches(items, batch_size)
        token = os.urandom(4).hex()
        n = 0

        def submit_more():
            nonlocal n
            while len(pending) < max_in_flight:
                batch = next(batches, None)
                if batch is None:
                    return
                pending.append(client.submit(_run_batch, runner_f, batch, key=f"map_frames-{token}-{n}", pure=False))
                n += 1

        submit_more()
        while pending:
            fut = pending.popleft()
            results = fut.result()
            fut.release()
            submit_more()
            yield from results
    finally:
        for fut in pending:
            fut.cancel()
        if own:
            client.close()


def map_frames(
    fn: Callable,
    items: Sequence | Iterable,
    *,
    workers: int = 1,
    desc: str = "frames",
    chunksize: int = 1,
    progress: bool | None = None,
    scheduler: Any = "local",
    batch_size: int | None = None,
    max_in_flight: int | None = None,
    on_error: str = "fail",
    max_skip_fraction: float = DEFAULT_MAX_SKIP_FRACTION,
    resume_dir: str | Path | None = None,
    params_hash: str | None = None,
    resume_write_arg: str = "out_dir",
    frames_per_item: Callable[[Any], int] | None = None,
    **kwargs,
) -> Iterator:
    """Yield ``fn(item, **kwargs)`` for each item, in input order.

    Parameters
    ----------
    fn : a picklable top-level function taking one item plus keyword arguments.
    items : the frames (dicts or records with a ``frame_id``); consumed lazily.
    workers : number of local processes; 1 runs in this process (easiest to debug). Ignored by
        a Dask scheduler, whose workers decide.
    chunksize : items per task handed to a local process.
    scheduler : ``"local"`` (default), ``"tcp://host:port"`` of a Dask scheduler, or a
        ``distributed.Client``. Outputs are byte-identical across backends as long as ``fn`` is
        deterministic per item (seed it from the frame id).
    batch_size : items per Dask task (default 8).
    max_in_flight : Dask batches submitted but not yet consumed (default 2 x cluster threads).
    on_error : ``"fail"`` raises FrameError/DataError naming the frame; ``"skip"`` yields a
        :class:`Skipped` marker in the place of a frame that raised a DataError (count them with
        :class:`SkipLog`); any other error stops the map as under ``"fail"``.
    max_skip_fraction : under ``"skip"``, more skipped frames than this share of the items (known
        once their number is: at once for a sized ``items``), or every item, raise DataError.
    resume_dir : scratch folder (outside any DVC output, e.g. :func:`sim2real.io.scratch_dir`);
        when set, finished frames survive a crash and are not recomputed by the next run.
        Contract: ``fn`` writes every file of a frame under the folder given as its keyword
        argument ``resume_write_arg`` (default ``out_dir``: the stage's *temporary* output), and
        the record it returns does not contain that folder's path (use the final output path).
        The scratch entry of these params is removed once every frame finished without skips.
    params_hash : resume key; default a hash of ``fn``'s name and its keyword arguments except
        the write folder (each must be plain data: dicts, lists, numbers, str, Paths, arrays).
    frames_per_item : for items that hold several frames (a batch): the number of frames in an
        item; the progress bar then counts frames (default: one frame per item).

    Keyword names above are reserved: ``fn`` cannot take arguments with those names.
    """
    check_on_error(on_error)
    max_skip_fraction = check_max_skip_fraction(max_skip_fraction)
    batch_size = int(batch_size or DEFAULT_BATCH_SIZE)
    if batch_size < 1 or (max_in_flight is not None and int(max_in_flight) < 1):
        raise ConfigError("compute.batch_size and compute.max_in_flight must be >= 1")
    distributed = is_distributed(scheduler)
    resume = None
    if resume_dir is not None:
        resume = _prepare_resume(resume_dir, params_hash, fn, kwargs, resume_write_arg)
    runner = _Runner(fn, kwargs, on_error, resume)
    total = len(items) if hasattr(items, "__len__") else None
    sizes: collections.deque[int] = collections.deque()  # frames of the items handed out, in order
    bar_total = total
    if frames_per_item is not None:
        bar_total = sum(frames_per_item(i) for i in items) if total is not None else None
        items = _sized(items, frames_per_item, sizes)
    bar = _progress(bar_total, desc, None if progress is None else not progress)
    skipped, seen, first = 0, 0, ""
    results = None
    try:
        if distributed:
            results = _dask_map(runner, items, scheduler, batch_size, max_in_flight)
        elif workers <= 1:
            results = (runner(item) for item in items)
        else:
            results = _pool_map(runner, items, workers, chunksize)
        for result in results:
            seen += 1
            if isinstance(result, Skipped):
                skipped += 1
                first = first or f"frame {result.frame_id}: {result.message}"
                if total is not None:  # stop as soon as the share is exceeded
                    check_skips(skipped, total, max_skip_fraction, first, where=desc, final=False)
            yield result
            bar.update(sizes.popleft() if frames_per_item is not None else 1)
        check_skips(skipped, seen, max_skip_fraction, first, where=desc)
        if resume is not None and skipped == 0:
            shutil.rmtree(resume.root, ignore_errors=True)
    finally:
        if results is not None and hasattr(results, "close"):
            results.close()  # stop pool / cancel Dask futures now when the consumer stops early
        bar.close()


def _pool_worker_init() -> None:
    """Pool workers die at once on SIGTERM (``Pool.terminate``). A forked worker inherits the
    stage's Python-level SIGTERM handler (:func:`sim2real.cli.exit_with_parent`), which runs only
    when the worker's main thread returns to the interpreter: a worker blocked in a lock inherited
    from the fork would never run it, and the stage would wait for it forever."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _pool_map(runner: _Runner, items: Iterable, workers: int, chunksize: int) -> Iterator:
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(processes=workers, initializer=_pool_worker_init) as pool:
        yield from pool.imap(runner, items, chunksize=chunksize)


def compute_options(compute: Any, data: Any = None, *, stage: str | None = None) -> dict:
    """map_frames keyword options from the params sections ``compute`` (and ``data``).

    Reads ``compute.processes`` (as map_frames' ``workers``), ``compute.scheduler``, ``compute.batch_size``,
    ``compute.max_in_flight``, ``compute.resume`` (needs ``stage`` for the scratch folder),
    ``data.on_error`` and ``data.max_skip_fraction``; keys that are absent get the defaults. Pass ``data`` only from a stage that
    handles :class:`Skipped` markers (with :class:`SkipLog`); without it ``on_error`` is ``fail``.
    Usage::

        for rec in map_frames(fn, items, desc="depth_blur", **compute_options(p.compute, p.data, stage="depth_blur"), ...):
    """
    c = dict(compute or {})
    d = dict(data or {})
    opts = {"workers": int(c.get("processes", 1) or 1), "scheduler": c.get("scheduler") or "local",
            "batch_size": c.get("batch_size"), "max_in_flight": c.get("max_in_flight"),
            "on_error": check_on_error(str(d.get("on_error") or "fail")),
            "max_skip_fraction": check_max_skip_fraction(d.get("max_skip_fraction"))}
    is_distributed(opts["scheduler"])  # validates the value
    if c.get("resume"):
        if not stage:
            raise ConfigError("compute.resume is true but the stage passed no stage name for its scratch folder")
        from sim2real.io import scratch_dir
        opts["resume_dir"] = scratch_dir(stage)
    return opts



# ----------------------------------------------------------------------------- compute device
_CUDA_INDEX = re.compile(r"^cuda:\d+$")
_GPU_INDICES = re.compile(r"^\d+(,\d+)*$")


def check_device(device: str | int, param: str, *, gpu_indices: bool = False) -> str:
    """The device a params key names, checked before any work: ``cpu``, ``cuda`` or ``cuda:<i>``
    (a torch device string); with ``gpu_indices`` (ultralytics' ``device`` argument) also ``<i>``
    or ``<i>,<j>,...`` (DDP over those GPUs) and ``mps``. Returns it as a string.

    Raises a one-line :class:`ConfigError` naming ``param`` (e.g. ``compute.device``) for an
    unknown form, for a CUDA device when torch sees none, or for an index beyond torch's device
    count (the cases ultralytics' ``select_device`` rejects with a long multi-line message).
    """
    d = str(device)
    if d == "cpu":
        return d
    forms = "cpu, cuda or cuda:<index>" + (", GPU indices (0 or 0,1) or mps" if gpu_indices else "")
    import torch

    if gpu_indices and d == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(f"params.yaml: {param} is 'mps' but torch.backends.mps.is_available() is False")
        return d
    if d == "cuda" or _CUDA_INDEX.match(d):
        indices = [int(d[5:])] if ":" in d else []
    elif gpu_indices and _GPU_INDICES.match(d):
        indices = [int(i) for i in d.split(",")]
    else:
        raise ConfigError(f"params.yaml: {param} must be {forms}, got {device!r}")
    if not torch.cuda.is_available():
        raise ConfigError(f"params.yaml: {param} is {device!r} but torch.cuda.is_available() is False")
    n = torch.cuda.device_count()
    if any(i >= n for i in indices):
        raise ConfigError(f"params.yaml: {param} is {device!r} but torch sees {n} CUDA device(s) (indices 0..{n - 1})")
    return d


# ----------------------------------------------------------------------------- per-process model cache
_WORKER_CACHE: dict[tuple[str, Hashable], Any] = {}
_WORKER_LOADS: dict[tuple[str, Hashable], int] = {}
_WORKER_LOCK = threading.RLock()  # a Dask worker may run tasks in several threads


def worker_cache(kind: str, key: Hashable, build: Callable[[], T], *, latest_only: bool = False) -> T:
    """``build()``'s result, built once per process (a local worker process, a Dask worker) for
    each ``(kind, key)`` and reused by every later task there: networks a per-frame function needs.

    Builds run under one lock, so threads of one worker never build the same network twice.
    ``latest_only``: keep only the latest entry of ``kind`` (e.g. one generator of whatever size).
    :func:`worker_cache_info` counts the builds.
    """
    full = (kind, key)
    with _WORKER_LOCK:
        if full in _WORKER_CACHE:
            return _WORKER_CACHE[full]
        value = build()
        if latest_only:
            for k in [k for k in _WORKER_CACHE if k[0] == kind]:
                del _WORKER_CACHE[k]
        _WORKER_CACHE[full] = value
        _WORKER_LOADS[full] = _WORKER_LOADS.get(full, 0) + 1
        return value


def worker_cache_info(prefix: str = "") -> dict:
    """This process's cache for kinds starting with ``prefix``: ``{"pid", "loads": {(kind, key):
    times built}, "cached": [(kind, key), ...]}`` (for tests; on Dask: ``client.run``)."""
    with _WORKER_LOCK:
        return {"pid": os.getpid(),
                "loads": {k: n for k, n in _WORKER_LOADS.items() if k[0].startswith(prefix)},
                "cached": [k for k in _WORKER_CACHE if k[0].startswith(prefix)]}
