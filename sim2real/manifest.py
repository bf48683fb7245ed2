"""Indexing datasets into manifests: one row per frame (ids, paths, size) and one per object.

Manifests are CSV (diff-friendly, no extra dependency). Columns:

``frames.csv`` (synthetic, chosen camera)
    frame_id, scene, variation, camera, frame, width, height, rgb, depth, class_seg,
    instance_seg, fx, fy, cx, cy, and the content fingerprint of each file: rgb_xxh3, depth_xxh3,
    class_seg_xxh3, instance_seg_xxh3 (:mod:`sim2real.fingerprint`)
``boxes.csv`` (synthetic, every camera of the indexed frames, file order per scene/variation)
    frame_id, scene, variation, line + the bbox.txt columns + label (from info.txt)
``real_frames.csv`` (KITTI)
    image_id, split (train|val), image, label, calib, semantic ('' when absent), width, height,
    image_xxh3, label_xxh3, calib_xxh3, semantic_xxh3
``real_boxes.csv``
    image_id + the 15 KITTI label columns
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from sim2real.errors import ConfigError, DataError
from sim2real.formats import kitti, vkitti2
from sim2real.fingerprint import FingerprintCache
from sim2real.formats.images import image_size
from sim2real.safety import resolve_within

FRAME_COLUMNS = ["frame_id", "scene", "variation", "camera", "frame", "width", "height", "rgb", "depth",
                 "class_seg", "instance_seg", "fx", "fy", "cx", "cy",
                 "rgb_xxh3", "depth_xxh3", "class_seg_xxh3", "instance_seg_xxh3"]
REAL_COLUMNS = ["image_id", "split", "image", "label", "calib", "semantic", "width", "height",
                "image_xxh3", "label_xxh3", "calib_xxh3", "semantic_xxh3"]
#: manifest columns holding file paths: checked against the data roots by :func:`check_manifest_paths`
PATH_COLUMNS = ("rgb", "depth", "class_seg", "instance_seg", "image", "label", "calib", "semantic",
                "source_image")


def frame_id(scene: str, variation: str, camera: int, frame: int) -> str:
    return f"{scene}_{variation}_c{camera}_{frame:05d}"


def rel(path: Path) -> str:
    """Path relative to the working directory when inside it (portable manifests), else absolute."""
    path = Path(path)
    try:
        return os.path.relpath(path.resolve(), Path.cwd().resolve()) if path.resolve().is_relative_to(Path.cwd().resolve()) else str(path.resolve())
    except (OSError, ValueError):
        return str(path)


def _reader_dir(text: str, cwd: str, folder: str) -> str:
    """The folder a manifest path ``text`` is read against (the rule of :func:`resolve_manifest_path`):
    ``folder`` (the manifest's, absolute) when ``text`` is relative, absent under ``cwd`` and
    present under ``folder``; else ``cwd``."""
    if os.path.isabs(text) or os.path.exists(os.path.join(cwd, text)) or not os.path.exists(os.path.join(folder, text)):
        return cwd
    return folder


def resolve_manifest_path(value: str, manifest_dir: str | Path) -> Path:
    """A path as a manifest lists it, the way every reader opens it: absolute as is; else relative
    to the working directory (the repository root) when it exists there; else relative to the
    manifest's folder ``manifest_dir`` when it exists there; else as given (relative to the
    working directory: the caller's "not found" names it)."""
    cwd = os.getcwd()
    if _reader_dir(str(value), cwd, os.path.abspath(manifest_dir)) == cwd:
        return Path(value)
    return Path(manifest_dir) / value


def _skip_or_raise(exc: DataError, skipped: list | None, fid: str) -> None:
    """Under ``data.on_error: skip`` (``skipped`` is a list) record a bad frame; else re-raise."""
    from sim2real.parallel import Skipped, is_system_error
    if skipped is None or is_system_error(exc):
        raise exc
    skipped.append(Skipped(fid, str(exc)))


def index_vkitti2_sequence(layout: vkitti2.Layout, scene: str, variation: str, camera: int, *,
                           frame_stride: int = 1, max_frames: int | None = None,
                           fingerprints: FingerprintCache | None = None,
                           skipped: list | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Index one scene/variation: (frames of ``camera``, boxes of every camera for those frames).

    Reads bbox.txt, info.txt and intrinsic.txt; checks that each frame's four image files exist,
    are whole (JPEG/PNG end markers, :func:`~sim2real.formats.images.check_complete`) and have
    one size (read from the headers); and that every box, of both cameras, lies inside its image
    (the other camera's size from its RGB header, or this camera's when that file is absent).
    Each file's content fingerprint goes to ``<column>_xxh3`` (:mod:`sim2real.fingerprint`;
    ``fingerprints`` caches them across runs).
    ``skipped``: a list (``data.on_error: skip``) gets a :class:`sim2real.parallel.Skipped` for
    each frame with a bad file (missing, unreadable, outside its dataset folder, no intrinsics),
    and that frame and its boxes are left out; None (``fail``) raises the DataError instead.
    """
    if frame_stride < 1 or (max_frames is not None and max_frames < 1):
        raise ConfigError(f"data.frame_stride must be >= 1 and data.max_frames >= 1 or null, got "
                          f"{frame_stride} and {max_frames}")
    frames = layout.frames(scene, variation, camera)[::frame_stride]
    if max_frames is not None:
        frames = frames[:max_frames]
    bbox_path = layout.textgt(scene, variation, "bbox")
    info_path = layout.textgt(scene, variation, "info")
    for p in (bbox_path, info_path):
        resolve_within(p, [layout.roots["textgt"]], source=p)
    bbox, bbox_lines = vkitti2.read_bbox(bbox_path, with_lines=True)
    info = vkitti2.read_info(info_path)
    intr = vkitti2.read_intrinsic(layout.textgt(scene, variation, "intrinsic"))
    intr = intr[intr["cameraID"] == camera].set_index("frame")
    rows = []
    sizes: dict[tuple[int, int], tuple[int, int]] = {}  # (camera, frame) -> (width, height)
    cache = fingerprints or FingerprintCache(None)
    for f in list(frames):
        paths = {m: layout.frame_path(m, scene, variation, camera, f) for m in vkitti2.FRAME_FILE}
        try:
            for m, p in paths.items():
                if not p.is_file():
                    raise DataError(p, f"missing {m} file for frame {f}")
                resolve_within(p, [layout.roots[m]], source=p)  # no symlink out of the dataset
            w, h = image_size(paths["rgb"])
            for m in ("depth", "classSegmentation", "instanceSegmentation"):
                size = image_size(paths[m])
                if size != (w, h):
                    raise DataError(paths[m], f"{m} map is {size[0]}x{size[1]}, the frame's RGB image {paths['rgb']} is {w}x{h}")
            if f not in intr.index:
                raise DataError(layout.textgt(scene, variation, "intrinsic"), f"no intrinsics for frame {f} camera {camera}")
        except DataError as exc:
            _skip_or_raise(exc, skipped, frame_id(scene, variation, camera, f))
            frames.remove(f)  # left out with its boxes
            continue
        sizes[(camera, f)] = (w, h)
        k = intr.loc[f]
        rows.append([frame_id(scene, variation, camera, f), scene, variation, camera, f, w, h,
                     rel(paths["rgb"]), rel(paths["depth"]), rel(paths["classSegmentation"]),
                     rel(paths["instanceSegmentation"]), k["K[0,0]"], k["K[1,1]"], k["K[0,2]"], k["K[1,2]"],
                     *(cache.fingerprint(paths[m]) for m in vkitti2.FRAME_FILE)])
    if fingerprints is None:
        cache.close()
    frames_df = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    keep = bbox["frame"].isin(set(frames)).to_numpy()
    boxes, lines = bbox[keep].copy(), bbox_lines[keep]
    for cam, f in zip(boxes["cameraID"], boxes["frame"]):  # the other camera: its RGB header, once per frame
        if (cam, f) not in sizes:
            other = layout.frame_path("rgb", scene, variation, int(cam), int(f))
            sizes[(cam, f)] = image_size(other) if other.is_file() else sizes[(camera, f)]
    if len(boxes):
        wh = np.array([sizes[(c, f)] for c, f in zip(boxes["cameraID"], boxes["frame"])])
        vkitti2.validate_boxes(boxes, wh[:, 0], wh[:, 1], bbox_path, lines)
    labels = info.set_index("trackID")["label"]
    missing = ~boxes["trackID"].isin(labels.index)
    if missing.any():
        i = int(np.argmax(missing.to_numpy()))
        raise DataError(bbox_path, f"trackID {boxes['trackID'].iloc[i]} is not listed in {info_path}",
                        line=int(lines[i]))
    boxes.insert(0, "line", lines)
    boxes.insert(0, "variation", variation)
    boxes.insert(0, "scene", scene)
    boxes.insert(0, "frame_id", [frame_id(scene, variation, c, f) for c, f in zip(boxes["cameraID"], boxes["frame"])])
    boxes["label"] = boxes["trackID"].map(labels).to_numpy()
    return frames_df, boxes.reset_index(drop=True)


def index_kitti(root: str | Path, val_fraction: float, seed: int,
                fingerprints: FingerprintCache | None = None,
                skipped: list | None = None) -> tuple[pd.DataFrame, Iterator[pd.DataFrame]]:
    """Index KITTI training images with a seeded train/val split (never overlapping).

    Checks each image is whole and reads its size from the header; each file's content
    fingerprint goes to ``<column>_xxh3`` ('' for an absent optional file). The boxes come as an
    iterator of one DataFrame per image (``image_id`` + the 15 label columns), each box checked
    to lie inside its image.
    ``skipped``: as in :func:`index_vkitti2_sequence`; an image whose label file is bad is found
    only while its boxes are read, so the caller keeps the frames whose boxes were yielded.
    """
    ids = kitti.list_training_ids(root)
    if not ids:
        raise DataError(Path(root) / "training" / "image_2", "no PNG images found")
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = int(round(len(ids) * float(val_fraction)))
    val = {ids[i] for i in order[:n_val]}
    rows = []
    cache = fingerprints or FingerprintCache(None)
    for image_id in ids:
        p = kitti.training_paths(root, image_id)
        try:
            for q in p.values():
                if q.exists():  # inside its folder (training/image_2, ...: each may be a symlink, see data_roots)
                    resolve_within(q, [q.parent], source=q)
            w, h = image_size(p["image"])
            if not p["label"].is_file():
                raise DataError(p["label"], "missing label file")
        except DataError as exc:
            _skip_or_raise(exc, skipped, image_id)
            continue
        files = [p["image"], p["label"], p["calib"] if p["calib"].is_file() else "",
                 p["semantic"] if p["semantic"].is_file() else ""]
        rows.append([image_id, "val" if image_id in val else "train", *(rel(q) if q else "" for q in files), w, h,
                     *(cache.fingerprint(q) if q else "" for q in files)])
    if fingerprints is None:
        cache.close()
    frames = pd.DataFrame(rows, columns=REAL_COLUMNS)

    def boxes() -> Iterator[pd.DataFrame]:
        for row in frames.itertuples():
            try:
                df, lines = kitti.read_label(row.label, with_lines=True)
                if "score" in df.columns:
                    raise DataError(row.label, "16 fields per line: a result file with scores, not a label file",
                                    line=int(lines[0]))
                kitti.check_boxes_inside(df, lines, row.width, row.height, row.label)
            except DataError as exc:
                _skip_or_raise(exc, skipped, row.image_id)
                continue
            df.insert(0, "image_id", row.image_id)
            yield df
    return frames, boxes()


def iter_groups(csv_path: str | Path, keys: Sequence[str], chunksize: int = 200_000) -> Iterator[pd.DataFrame]:
    """Yield consecutive row groups of a CSV that share ``keys`` (file order), reading in chunks."""
    pending = None
    for chunk in pd.read_csv(csv_path, chunksize=chunksize, keep_default_na=False):
        if pending is not None:
            chunk = pd.concat([pending, chunk], ignore_index=True)
        k = chunk[list(keys)].astype(str).agg("\x1f".join, axis=1)
        change = np.flatnonzero(k.to_numpy()[1:] != k.to_numpy()[:-1]) + 1
        starts = [0, *change.tolist()]
        for a, b in zip(starts[:-1], starts[1:]):
            yield chunk.iloc[a:b].reset_index(drop=True)
        pending = chunk.iloc[starts[-1]:].reset_index(drop=True)
    if pending is not None and len(pending):
        yield pending


def read_manifest(path: str | Path, need: Sequence[str] = (), *, roots: Sequence[str | Path],
                  all_str: bool = False, missing_hint: str = "run the upstream stage first (dvc repro)",
                  usecols: Sequence[str] | None = None, base: str | Path | None = None) -> pd.DataFrame:
    """Read a manifest/report CSV written by a stage; DataError naming the file when it is absent
    or lacks a needed column. Ids (frame_id, image_id) stay strings ("000123" is not 123).

    Every path column (:data:`PATH_COLUMNS`) is checked against ``roots`` (the data roots the stage
    built from its params, :func:`sim2real.safety.data_roots`) with :func:`check_manifest_paths`.
    ``usecols`` reads only those columns (all when None; absent ones are reported as missing).
    ``base``: for a reader that joins every relative path to one folder (:func:`check_manifest_paths`' ``base``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, f"not found ({missing_hint})")
    types = str if all_str else {"frame_id": str, "image_id": str}
    cols = None
    if usecols is not None:
        header = pd.read_csv(path, nrows=0).columns
        missing = [c for c in usecols if c not in header]
        if missing:
            raise DataError(path, f"missing column(s) {', '.join(missing)}")
        cols = list(usecols)
        if isinstance(types, dict):
            types = {k: v for k, v in types.items() if k in cols}
    df = pd.read_csv(path, dtype=types, keep_default_na=False, usecols=cols)
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(missing)}")
    check_manifest_paths(df, path, roots, base=base)
    return df


# ----------------------------------------------------------------------------- path checks
def _inside(real: str, roots: Sequence[str]) -> bool:
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def check_manifest_paths(df: pd.DataFrame, manifest: str | Path, roots: Sequence[str | Path], *,
                         columns: Sequence[str] = PATH_COLUMNS, first_line: int = 2,
                         base: str | Path | None = None) -> None:
    """Reject manifest paths that escape the data roots (``..``, absolute paths elsewhere, symlinks).

    Each non-empty value of the path ``columns`` present in ``df`` (``label`` only in a manifest
    that lists images, i.e. has an ``image`` column: in box tables it is the class name) is
    interpreted the way the readers open it (:func:`resolve_manifest_path`: absolute, else relative
    to the working directory (the repository root) when that exists, else relative to the
    manifest's folder when that exists); every symlink on the way is followed
    (:func:`sim2real.safety.resolve_within`) and the result must lie inside one of ``roots``.
    Each folder's real path is computed once per call (a manifest lists many files per folder).

    Parameters
    ----------
    df : the manifest as read, one row per CSV line in file order (line = row position + ``first_line``).
    manifest : the CSV file, named in the error.
    roots : the allowed folders: the data roots the stage built from its params
        (:func:`sim2real.safety.data_roots`); never read from a params file here.
    base : for a reader that always joins relative paths to one folder (e.g. ``val_dir / p``):
        that folder; None = the readers' rule above.

    Raises
    ------
    DataError : ``<manifest>:<line>: path '...' resolves [through a symlink] to ..., outside the data roots``.

    References
    ----------
    OWASP, "Path Traversal" (CWE-22) and "Link Following" (CWE-59).
    """
    manifest = Path(manifest)
    if isinstance(roots, (str, os.PathLike)):
        raise TypeError(f"check_manifest_paths: roots must be a list of folders, got one path {str(roots)!r}")
    if not roots:
        raise ConfigError(f"no data roots given to check the paths of {manifest}")
    real_roots = [os.path.realpath(r) for r in roots]
    cwd, folder = os.getcwd(), os.path.abspath(manifest.parent)
    fixed = None if base is None else os.path.abspath(base)
    real_dirs: dict[str, str] = {}
    for col in columns:
        if col not in df.columns or (col == "label" and "image" not in df.columns):
            continue  # in box tables (boxes.csv, boxes_kept.csv: no image column) label is the class name
        for i, value in enumerate(df[col].tolist()):
            if value is None or (isinstance(value, float) and value != value):
                continue
            text = str(value)
            if text in ("", "nan"):
                continue
            where = _reader_dir(text, cwd, folder) if fixed is None else fixed
            full = os.path.join(where, text)
            head, name = os.path.split(full)
            if name not in ("", ".", "..") and "\x00" not in full and not os.path.islink(full):
                real_head = real_dirs.get(head)
                if real_head is None:
                    real_head = real_dirs[head] = os.path.realpath(head)
                if _inside(os.path.join(real_head, name), real_roots):
                    continue  # fast path: parent folder resolved once, file itself not a symlink
            resolve_within(text, real_roots, source=manifest, line=first_line + i, base=where)
