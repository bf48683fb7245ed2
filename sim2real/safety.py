"""Input hygiene: paths stay inside the configured data roots, and no hidden network calls.

* :func:`resolve_within` — the one check for a path read from a manifest, a label file or
  params: it is resolved (``..`` collapsed, every symlink followed) and must land inside one of
  the allowed roots (also resolved, so a data root that is itself a symlink to a mounted disk is
  fine). ``../../etc/passwd``, an absolute path elsewhere, or a symlink inside the dataset that
  points outside it raise :class:`~sim2real.errors.DataError` naming the manifest.
* :func:`data_roots` — the configured data roots: ``data/``, ``data.demo_root`` (inside the
  repository) and the external datasets ``data.vkitti2_root`` / ``data.kitti_root`` wherever they
  resolve (another disk, ``../datasets/vkitti2``), each of their modality folders included
  wherever *it* resolves. Ingest checks every path it records against these roots, with the same
  function the later stages use, so what ingest accepts no later stage refuses.
* :func:`block_network` — a context manager that refuses outgoing connections to anything but
  loopback (and UNIX sockets); the tests run the default pipeline under it.
* :func:`load_torch_file` — the one way a user-supplied weights file is read: ``torch.load`` with
  ``weights_only=True``; a file that would need arbitrary unpickling is refused with one line naming
  the file and the params key, never a multi-paragraph torch message.

References
----------
OWASP, "Path Traversal" (CWE-22) and "Link Following" (CWE-59).
"""
from __future__ import annotations

import contextlib
import fnmatch
import ipaddress
import os
import re
import socket
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

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


#: the folders of an external dataset root that may each live on another disk (symlinked):
#: vKITTI2 ships one archive per modality (``vkitti_2.0.3_rgb/``, ...), KITTI one per folder
#: of ``training/``
DATASET_FOLDERS = {"vkitti2_root": ("vkitti_*",), "kitti_root": ("training", "training/*")}


def _dataset_folders(root: Path, patterns: Sequence[str]) -> list[Path]:
    """Folders under ``root`` matching ``patterns`` ('/'-separated, matched case-insensitively
    as the dataset readers match names)."""
    out = []
    for pattern in patterns:
        level = [root]
        for part in pattern.lower().split("/"):
            level = [c for d in level if d.is_dir() for c in sorted(d.iterdir()) if fnmatch.fnmatch(c.name.lower(), part)]
        out.extend(p for p in level if p.is_dir())
    return out


def data_roots(data: Any = None, base: str | Path | None = None) -> list[Path]:
    """The configured data roots, resolved: the repository's ``data/`` plus ``data.demo_root``,
    ``data.vkitti2_root`` and ``data.kitti_root`` when set (params section ``data``), plus the
    repository's DVC cache (``.dvc/cache``, for checkouts with ``cache.type: symlink``).

    ``data.demo_root`` (a DVC output) must stay inside the repository (``base``) *before* its
    symlinks are followed (``data/`` may be a symlink to another disk; ``data/../x`` is refused).
    The external roots (vkitti2, kitti) are the user's datasets and may be anywhere: absolute, or
    relative to the repository (``../datasets/vkitti2``); each of their dataset folders
    (:data:`DATASET_FOLDERS`, e.g. ``vkitti_2.0.3_rgb/`` symlinked to another disk) is a root
    wherever it resolves. Anything below those folders must resolve inside them. Raises
    ConfigError naming the key.
    """
    base = Path(os.path.abspath(base or Path.cwd()))
    roots = [base / "data"]
    d = dict(data or {})
    for key in ("demo_root", "vkitti2_root", "kitti_root"):
        value = d.get(key)
        if not value:
            continue
        root = Path(str(value)).expanduser()
        if key == "demo_root":
            if root.is_absolute():
                raise ConfigError(f"params.yaml: data.{key} must be a path inside the repository, "
                                  f"got absolute {value!r}")
            if not Path(os.path.normpath(base / root)).is_relative_to(base):
                raise ConfigError(f"params.yaml: data.{key}={value!r} points outside the repository {base}")
        root = base / root
        roots.append(root)
        roots.extend(_dataset_folders(root, DATASET_FOLDERS.get(key, ())))
    if (base / ".dvc" / "cache").is_dir():  # DVC checkouts with cache.type symlink point into it
        roots.append(base / ".dvc" / "cache")
    out: list[Path] = []
    for r in roots:
        real = Path(os.path.realpath(r))
        if real not in out:
            out.append(real)
    return out


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


# ----------------------------------------------------------------------------- checkpoint files
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _reason(exc: BaseException) -> str:
    """``Type: first sentence`` of an exception whose message may span paragraphs (torch's do)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # torch's boilerplate first, the actual reason after this
        text = text.split("WeightsUnpickler error:", 1)[1]
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    line = line.split(". ", 1)[0].rstrip(".")
    if len(line) > 200:
        line = line[:200].rsplit(" ", 1)[0] + " …"
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def load_torch_file(path: str | Path, *, what: str, param: str | None = None, hint: str | None = None) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with one-line errors.

    Every user-supplied weights file (CycleGAN generator, Inception-v3, VGG16, WCT2) goes through
    here. Torch's own messages span several paragraphs; this one names the file, what it should
    be and the params key that chose it (``param``), and says what to do (``hint``).

    Raises
    ------
    DataError : missing; refused because the pickle references Python objects other than tensors
        and plain containers (weights-only loading never runs them; such a file can execute code
        when loaded the unsafe way); or not a readable PyTorch file (truncated, another format).
    """
    import pickle

    import torch

    path = Path(path)
    src = f" (params.yaml {param})" if param else ""
    tail = f"; {hint}" if hint else ""
    if not path.is_file():
        raise DataError(path, f"{what}{src} not found{tail}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        if found is None:
            raise DataError(path, f"cannot read {what}{src}: corrupt or not a PyTorch file "
                                  f"({_reason(exc)}){tail}") from None
        raise DataError(path, f"refused to load {what}{src}: besides tensors the file pickles a Python object "
                              f"({found.group(1)}), and unpickling that can run arbitrary code (weights-only "
                              f"loading refused it, nothing ran); save a plain state_dict instead "
                              f"(torch.save(model.state_dict(), path))") from None
    except Exception as exc:  # noqa: BLE001 - RuntimeError (zip), EOFError, OSError, ValueError, ...
        raise DataError(path, f"cannot read {what}{src}: corrupt, truncated or not a PyTorch file "
                              f"({_reason(exc)}){tail}") from None


def state_dict_mismatch(expected: Mapping[str, Any], given: Mapping[str, Any], show: int = 3) -> str | None:
    """One line saying how a loaded state_dict ``given`` differs from a model's ``expected`` one
    (missing keys, unexpected keys, shape differences; the first ``show`` of each), or None.

    ``load_state_dict``'s own error lists every key over many lines; this is for messages."""
    missing = [k for k in expected if k not in given]
    extra = [k for k in given if k not in expected]
    shapes = [f"{k} {tuple(getattr(given[k], 'shape', ()))} != {tuple(v.shape)}" for k, v in expected.items()
              if k in given and tuple(getattr(given[k], "shape", ())) != tuple(v.shape)]
    parts = [f"{label} {', '.join(keys[:show])}{f' (+{len(keys) - show} more)' if len(keys) > show else ''}"
             for label, keys in (("missing", missing), ("unexpected", extra), ("shape", shapes)) if keys]
    return "; ".join(parts) or None
