"""Content fingerprints of input files, so that DVC sees external data change.

The data roots of real data (``data.vkitti2_root``, ``data.kitti_root``) are not DVC
dependencies: DVC would hash every byte of 42k frames on every ``dvc status``. Instead ingest
writes a fingerprint of every file it indexes into its manifests (``<column>_xxh3``): replace the
pixels of one frame and that frame's manifest row changes, so ``data/ingest`` and everything
downstream of it reruns once ingest has run again (see docs/faults-data.md).

The fingerprint is the 64-bit XXH3 hash of the file's bytes (xxhash, ~10 GB/s; the library DVC
itself installs), as 16 hex digits. Hashing is done once per file version: a cache keyed by
(device, inode, size, mtime_ns, ctime_ns) keeps the digests in an SQLite file outside every DVC
output. ``ctime`` cannot be set by users (``touch -d``, ``cp -p`` and ``rsync -a`` set mtime
only), so a rewritten file with a restored mtime still misses the cache; re-ingesting an
unchanged 42k-frame dataset then costs one ``stat`` per file instead of reading every byte.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Iterable

import xxhash

SUFFIX = "_xxh3"  # manifest column of a path column's fingerprint: rgb -> rgb_xxh3
CHUNK_BYTES = 1 << 20


def hash_file(path: str | Path) -> str:
    """XXH3-64 of the file's bytes, 16 hex digits."""
    h = xxhash.xxh3_64()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def _key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class FingerprintCache:
    """``{absolute path: (device, inode, size, mtime_ns, ctime_ns, digest)}`` in an SQLite file.

    Read whole on open (one query; ~40 MB of Python objects for 170k files) and written back
    on :meth:`close` (new and changed entries only). Use as a context manager. ``path=None``: in memory only.
    """

    def __init__(self, path: str | Path | None):
        self.path = None if path is None else Path(path)
        self.entries: dict[str, tuple] = {}
        self.new: dict[str, tuple] = {}
        if self.path is not None and self.path.is_file():
            with contextlib.closing(sqlite3.connect(str(self.path))) as db:
                try:
                    rows = db.execute("SELECT path, dev, ino, size, mtime_ns, ctime_ns, digest FROM files").fetchall()
                except sqlite3.DatabaseError:
                    rows = []  # an unreadable cache is only a cache: hash again
            self.entries = {r[0]: tuple(r[1:]) for r in rows}
        self.hits = self.misses = 0

    def fingerprint(self, path: str | Path) -> str:
        """The file's digest, from the cache when the file's (device, inode, size, mtime, ctime) match."""
        real = os.path.abspath(path)  # the key; (device, inode) identify the file itself
        st = os.stat(real)
        key = _key(st)
        entry = self.entries.get(real)
        if entry is not None and entry[:5] == key:
            self.hits += 1
            return entry[5]
        digest = hash_file(real)
        self.misses += 1
        if _key(os.stat(real)) == key:  # not changed while being read; otherwise hash again next time
            self.entries[real] = self.new[real] = (*key, digest)
        return digest

    def close(self) -> None:
        """Write the new entries (one transaction; a failure to write the cache is not an error of the stage)."""
        if self.path is None or not self.new:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.closing(sqlite3.connect(str(self.path))) as db, db:
                db.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, "
                           "size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, digest TEXT)")
                db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                               [(p, *v) for p, v in self.new.items()])
        except (OSError, sqlite3.Error) as exc:
            print(f"warning: fingerprint cache {self.path} not updated ({exc}); the next run hashes again")
        self.new = {}

    def __enter__(self) -> "FingerprintCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def file_fingerprints(paths: Iterable[str | Path], cache: FingerprintCache | None = None) -> list[str]:
    """Digest of each path ('' for an empty path: an optional file that is absent)."""
    own = cache is None
    cache = cache or FingerprintCache(None)
    try:
        return [cache.fingerprint(p) if str(p) else "" for p in paths]
    finally:
        if own:
            cache.close()
