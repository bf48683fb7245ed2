"""Reading params.yaml sections for stages.

Stages read only the sections they declare in dvc.yaml; :func:`load_params` returns them as
attribute-accessible mappings (``p.blur.sigma``) so a typo in a key fails loudly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sim2real.errors import ConfigError

PARAMS_FILE = "params.yaml"


class Section(dict):
    """A dict whose keys can be read as attributes; missing keys raise ConfigError."""

    def __init__(self, data: dict, name: str = ""):
        super().__init__({k: _wrap(v, f"{name}.{k}" if name else str(k)) for k, v in data.items()})
        self._name = name

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            where = f"{self._name}.{key}" if self._name else key
            raise ConfigError(f"params.yaml: missing key '{where}'") from None

    def __reduce__(self):
        return (Section, (dict(self), self._name))


def _wrap(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        return Section(value, name)
    return value


def read_params_file(path: str | Path = PARAMS_FILE) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found (run from the repository root)")
    with path.open() as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_params(*sections: str, path: str | Path = PARAMS_FILE) -> Section:
    """Return the named top-level sections (or scalars, e.g. ``seed``) of params.yaml."""
    data = read_params_file(path)
    out = {}
    for name in sections:
        if name not in data:
            raise ConfigError(f"{path}: missing section '{name}'")
        out[name] = data[name]
    return Section(out)


def plain(section: Any) -> Any:
    """A params Section (nested) as plain dicts: picklable and JSON-able for workers and reports."""
    if isinstance(section, dict):
        return {k: plain(v) for k, v in section.items()}
    return section


def layer(base: dict, overlay_file: str | Path, sections: tuple[str, ...]) -> dict:
    """``base`` (plain dicts) with the keys of ``overlay_file``'s ``sections`` laid over it, key by key
    (e.g. the calibrate stage's fitted blur/haze/camera values over params.yaml's). A section the
    overlay lacks stays as it is; a section the overlay has beyond ``sections`` is a ConfigError."""
    over = read_params_file(overlay_file)
    extra = set(over) - set(sections)
    if extra:
        raise ConfigError(f"{overlay_file}: unexpected section(s) {sorted(extra)} (allowed: {', '.join(sections)})")
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for sec, kv in over.items():
        if not isinstance(kv, dict):
            raise ConfigError(f"{overlay_file}: section '{sec}' must be a mapping")
        out[sec] = {**(out.get(sec) or {}), **kv}
    return out
