"""Input hygiene: paths stay inside the configured data roots, and no hidden network calls.

* :func:`resolve_within` — the one check for a path read from a manifest, a label file or
  params: it is resolved (``..`` collapsed, every symlink followed) and must land inside one of
  the allowed roots (also resolved, so a data root that is itself a symlink to a mounted disk is
  fine). ``../../etc/passwd``, an absolute path elsewhere, or a symlink inside the dataset that
  points outside it raise :class:`~sim2real.errors.DataError` naming the manifest.
* :func:`check_param_path` — a relative path in params.yaml must stay inside the repository.
* :func:`block_network` — a context manager that refuses outgoing connections to anything but
  loopback (and UNIX sockets); the tests run the default pipeline under it.

References
----------
OWASP, "Path Traversal" (CWE-22) and "Link Following" (CWE-59).
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from sim2real.errors import ConfigError, DataError


def _resolved(path: str | Path, base: str | Path | None = None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = Path(base or Path.cwd()) / p
    return Path(os.path.realpath(p))


def resolve_within(path: str | Path, roots: Sequence[str | Path], *, source: str | Path | None = None,
                   line: int | None = None, base: str | Path | None = None) -> Path:
    """Return ``path`` resolved, after checking it lies inside one of ``roots``.

    Parameters
    ----------
    path : relative (to ``base``, default the working directory = repository root) or absolute.
    roots : the allowed folders (data roots); resolved the same way.
    source, line : where the path was read (the manifest), for the error message.

    Raises
    ------
    DataError : the resolved path (after following symlinks) is outside every root.
    """
    if not roots:
        raise ConfigError("resolve_within: no data roots configured")
    if "\x00" in str(path):
        raise DataError(source or path, f"path {str(path)!r} contains a NUL byte", line=line)
    real = _resolved(path, base)
    for root in roots:
        if real.is_relative_to(_resolved(root, base)):
            return real
    plain = Path(os.path.abspath(Path(base or Path.cwd()) / Path(path).expanduser()))
    how = "resolves through a symlink to" if plain != real else "resolves to"
    names = ", ".join(str(r) for r in roots)
    raise DataError(source or path, f"path {str(path)!r} {how} {real}, outside the data roots ({names})", line=line)


def check_paths(paths: Iterable[str | Path], roots: Sequence[str | Path], *, source: str | Path,
                first_line: int = 2, base: str | Path | None = None) -> None:
    """Check each non-empty path of a manifest column (line numbers counted from ``first_line``)."""
    resolved_roots = [_resolved(r, base) for r in roots]
    for i, p in enumerate(paths):
        if p is None or str(p) == "" or str(p) == "nan":
            continue
        resolve_within(p, resolved_roots, source=source, line=first_line + i, base=base)


def check_manifest(df: Any, columns: Sequence[str], roots: Sequence[str | Path], *, source: str | Path,
                   base: str | Path | None = None) -> None:
    """Check every path column of a manifest DataFrame (CSV line = row index + 2)."""
    for col in columns:
        if col in df.columns:
            check_paths(df[col].astype(str).tolist(), roots, source=source, base=base)


def data_roots(data: Any = None, base: str | Path | None = None) -> list[Path]:
    """The configured data roots: the repository's ``data/`` plus ``data.demo_root``,
    ``data.vkitti2_root`` and ``data.kitti_root`` when set (params section ``data``)."""
    base = Path(base or Path.cwd())
    roots = [base / "data"]
    d = dict(data or {})
    for key in ("demo_root", "vkitti2_root", "kitti_root"):
        if d.get(key):
            roots.append(check_param_path(d[key], f"data.{key}", base=base, allow_absolute=key != "demo_root"))
    return roots


def check_param_path(value: str | Path, key: str, *, base: str | Path | None = None,
                     allow_absolute: bool = False) -> Path:
    """A path from params.yaml: relative ones must stay inside the repository (``base``).

    Absolute paths are accepted only where ``allow_absolute`` (external dataset roots). Symlinks
    are followed before the check. Raises ConfigError naming the key.
    """
    base = Path(base or Path.cwd())
    p = Path(str(value)).expanduser()
    if p.is_absolute():
        if not allow_absolute:
            raise ConfigError(f"params.yaml: {key} must be a path inside the repository, got absolute {value!r}")
        return Path(os.path.realpath(p))
    real = _resolved(p, base)
    if not real.is_relative_to(_resolved(base)):
        raise ConfigError(f"params.yaml: {key}={value!r} resolves to {real}, outside the repository {base}")
    return real


# ----------------------------------------------------------------------------- network guard
class NetworkBlocked(ConnectionRefusedError):
    """An outgoing connection to a non-loopback address was attempted under :func:`block_network`."""


def _is_loopback(family: int, address: Any) -> bool:
    if family == getattr(socket, "AF_UNIX", None):
        return True
    if not isinstance(address, tuple) or not address:
        return False
    host = str(address[0])
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name: resolving it would be a network call already


@contextlib.contextmanager
def block_network() -> Iterator[list[str]]:
    """Refuse outgoing connections except loopback and UNIX sockets, in this process.

    Patches ``socket.socket.connect``/``connect_ex``/``sendto`` and ``socket.getaddrinfo``
    (DNS for anything but localhost). Yields the list of refused attempts, each
    ``"host:port"``. Child processes are not covered (start them with no route instead).
    """
    attempts: list[str] = []
    orig = {name: getattr(socket.socket, name) for name in ("connect", "connect_ex", "sendto")}
    orig_gai = socket.getaddrinfo

    def refuse(what: str):
        attempts.append(what)
        raise NetworkBlocked(f"network access blocked by sim2real.safety.block_network: {what}")

    def connect(self, address, *a, **k):
        if not _is_loopback(self.family, address):
            refuse(f"{address}")
        return orig["connect"](self, address, *a, **k)

    def connect_ex(self, address, *a, **k):
        if not _is_loopback(self.family, address):
            refuse(f"{address}")
        return orig["connect_ex"](self, address, *a, **k)

    def sendto(self, data, *args):
        address = args[-1]
        if not _is_loopback(self.family, address):
            refuse(f"{address}")
        return orig["sendto"](self, data, *args)

    def getaddrinfo(host, *a, **k):
        h = host.decode() if isinstance(host, bytes) else host
        if h not in (None, "localhost", "") and not _is_loopback(socket.AF_INET, (h, 0)):
            refuse(f"dns {h}")
        return orig_gai(host, *a, **k)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.socket.sendto = sendto
    socket.getaddrinfo = getaddrinfo
    try:
        yield attempts
    finally:
        for name, fn in orig.items():
            setattr(socket.socket, name, fn)
        socket.getaddrinfo = orig_gai
