"""Experiment tracking in one place: Weights & Biases and DVCLive.

Every stage that trains or produces metrics wraps its work in one :class:`Tracker`::

    with Tracker("gap", variant, config=dict(p.gap), dvclive_dir="reports/live/gap/baseline",
                 tracking=p.tracking) as t:
        t.log({"kid": 0.012, "pad": 0.4})          # scalars (nested dicts are flattened with "/")
        t.log_image("samples", grid_rgb_u8)          # RGB uint8 (H, W, 3)
        t.summary({"blur_profile_distance": 0.31})

* **W&B**: one run per stage × variant, named ``<stage>-<variant>``, grouped by the DVC experiment
  name (``DVC_EXP_NAME``, set by ``dvc exp run``; ``"workspace"`` otherwise), tagged with the stage,
  the variant and the git commit's short sha. ``mode`` comes from ``WANDB_MODE`` and defaults to
  ``"offline"``: nothing is sent and nothing prompts. ``online`` without an API key (``WANDB_API_KEY``
  or a netrc entry) or without network falls back to offline with a warning instead of failing a
  stage; ``disabled`` turns W&B off. Keys are only ever read by wandb itself from the environment;
  nothing here reads, logs or stores them. Project and entity come from the ``tracking`` params
  section, which the stage loads and passes (this module reads no params file).
* **Files**: W&B writes under ``<wandb_root>/wandb/`` (default: the current directory, i.e. the
  git-ignored ``wandb/`` folder at the repository root), never inside a DVC output, so tracking can
  not make a stage's outputs non-deterministic. Console capture and system statistics are off.
* **DVCLive** (when ``dvclive_dir`` is given): ``Live(dir, save_dvc_exp=False, dvcyaml=None)``;
  the owning stage declares ``<dvclive_dir>/metrics.json`` as a metrics file (``cache: false``) in
  dvc.yaml, which is what makes ``dvc exp show`` / ``dvc metrics diff`` list the numbers. Only
  scalars logged with a ``step`` go to DVCLive's step history (``plots/metrics/*.tsv``, no
  timestamps), so DVCLive's files are byte-identical for identical inputs.

Offline runs can be uploaded later with ``wandb sync wandb/offline-run-*``.
"""
from __future__ import annotations

import netrc
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sim2real.errors import ConfigError

_MODES = ("online", "offline", "disabled", "dryrun", "run")


def wandb_mode() -> str:
    """The W&B mode: ``WANDB_MODE`` when set (online/offline/disabled), else ``"offline"``."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower() or "offline"
    if mode not in _MODES:
        raise ConfigError(f"WANDB_MODE={mode!r}: expected one of online, offline, disabled")
    if mode == "dryrun":
        return "offline"
    if mode == "run":
        return "online"
    return mode


def experiment_name() -> str:
    """The DVC experiment name (``DVC_EXP_NAME`` under ``dvc exp run``), else ``"workspace"``."""
    return os.environ.get("DVC_EXP_NAME", "").strip() or "workspace"


def git_commit_short(cwd: str | Path = ".") -> str | None:
    """Short sha of HEAD (the experiment's baseline under ``dvc exp run``); None outside git."""
    base = os.environ.get("DVC_EXP_BASELINE_REV", "").strip()
    if base:
        return base[:7]
    try:
        out = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else None


def _has_api_key() -> bool:
    """Whether wandb could authenticate (without reading the key's value into our code)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc().authenticators(os.environ.get("WANDB_BASE_URL", "api.wandb.ai").split("//")[-1])
    except (OSError, netrc.NetrcParseError):
        return False
    return auth is not None


def tracking_settings(tracking: Any) -> tuple[str, str | None]:
    """(project, entity) of a ``tracking`` params section (a mapping or the typed section the stage
    loaded with :func:`sim2real.params.load_params`); ConfigError naming the key when malformed."""
    if not hasattr(tracking, "get"):
        raise ConfigError(f"tracking: expected a mapping with project and entity, got {tracking!r}")
    project, entity = tracking.get("project"), tracking.get("entity")
    if not isinstance(project, str) or not project:
        raise ConfigError(f"tracking.project: expected a non-empty string (the W&B project), got {project!r}")
    if entity is not None and (not isinstance(entity, str) or not entity):
        raise ConfigError(f"tracking.entity: expected a non-empty string or null, got {entity!r}")
    return project, entity


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts with ``/``; keep numbers (bools -> 0/1) and strings; drop None.

    Raises ``ValueError`` for any other value (a list, an array, ...), so a mistake does not
    silently drop a metric.
    """
    out: dict[str, Any] = {}
    for key, val in metrics.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(val, Mapping):
            out.update(flatten_metrics(val, name))
        elif val is None:
            continue
        elif isinstance(val, (bool, np.bool_)):
            out[name] = int(val)
        elif isinstance(val, (int, float, np.integer, np.floating)):
            out[name] = val.item() if isinstance(val, np.generic) else val
        elif isinstance(val, str):
            out[name] = val
        else:
            raise ValueError(f"metric '{name}': expected a number, a string or a dict, got {type(val).__name__}")
    return out


def _jsonable_config(config: Mapping[str, Any]) -> dict:
    def conv(v):
        if isinstance(v, Mapping):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, Path):
            return str(v)
        return v
    return conv(dict(config))


class Tracker:
    """One tracked run of a stage for one variant (W&B + optional DVCLive); a context manager.

    Parameters
    ----------
    stage : stage name, e.g. ``"gap"``.
    variant : the variant name (``"baseline"``, ``"depth_blur"``, ...) or None for a stage-wide run.
    config : the params the stage read (logged as the W&B run config).
    dvclive_dir : folder for DVCLive's ``metrics.json`` (declared by the stage in dvc.yaml), or
        None for no DVCLive.
    wandb_root : folder under which W&B writes ``wandb/``; default ``SIM2REAL_WANDB_ROOT`` or the
        current directory (the repository root for DVC stages).
    tracking : the ``tracking`` params section the stage loaded (``project``, ``entity``: the W&B
        project and team; :func:`tracking_settings`).
    outputs : the stage's :class:`sim2real.io.Outputs` transaction: DVCLive then writes into a
        temporary folder renamed into ``dvclive_dir`` together with the stage's other outputs.
        Without it the folder is still written to a temporary, renamed when the ``with`` block
        ends without error. Either way a failed stage leaves the old ``dvclive_dir`` untouched.
    """

    def __init__(self, stage: str, variant: str | None, config: Mapping[str, Any] | None = None,
                 dvclive_dir: str | Path | None = None, *, tracking: Any, wandb_root: str | Path | None = None,
                 outputs=None):
        if not stage:
            raise ConfigError("Tracker: stage name must not be empty")
        self.stage = stage
        self.variant = variant
        self.config = _jsonable_config(config or {})
        self.dvclive_dir = None if dvclive_dir is None else Path(dvclive_dir)
        self.wandb_root = Path(wandb_root or os.environ.get("SIM2REAL_WANDB_ROOT") or ".")
        self.project, self.entity = tracking_settings(tracking)
        self.name = f"{stage}-{variant}" if variant else stage
        self.group = experiment_name()
        self.commit = git_commit_short()
        self.mode = wandb_mode()
        self.run = None       # the wandb run (None when disabled)
        self.live = None      # the DVCLive Live (None without dvclive_dir)
        self._step = 0
        self._run_dir: Path | None = None
        self._outputs = outputs
        self._own_outputs = None  # atomic_outputs() context of the DVCLive folder when no outputs given

    # ------------------------------------------------------------------ lifecycle
    @property
    def tags(self) -> list[str]:
        tags = [self.stage]
        if self.variant:
            tags.append(self.variant)
        if self.commit:
            tags.append(self.commit)
        return tags

    @property
    def run_dir(self) -> Path | None:
        """The W&B run folder (``wandb/offline-run-*`` in offline mode), None when disabled.

        Still set after the ``with`` block ends, so tests can read the finished run."""
        return self._run_dir

    def _init_wandb(self, mode: str):
        import wandb
        self.wandb_root.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(console="off", x_disable_stats=True, x_disable_machine_info=True,
                                  disable_code=True, save_code=False, x_save_requirements=False,
                                  silent=True, init_timeout=60.0)
        return wandb.init(project=self.project, entity=self.entity, name=self.name, group=self.group,
                          job_type=self.stage, tags=self.tags, config=self.config,
                          dir=str(self.wandb_root.resolve()), mode=mode, settings=settings, reinit="create_new")

    def __enter__(self) -> "Tracker":
        mode = self.mode
        if mode == "online" and not _has_api_key():
            warnings.warn("WANDB_MODE=online but no W&B API key (WANDB_API_KEY or netrc): logging offline; "
                          "upload later with `wandb sync wandb/offline-run-*`", stacklevel=2)
            mode = "offline"
        if mode != "disabled":
            try:
                self.run = self._init_wandb(mode)
            except Exception as exc:  # noqa: BLE001 - tracking must never fail a stage
                if mode != "online":
                    raise
                warnings.warn(f"W&B online init failed ({type(exc).__name__}: {exc}); logging offline", stacklevel=2)
                mode = "offline"
                self.run = self._init_wandb(mode)
            self.mode = mode
            self._run_dir = Path(self.run.dir).parent
        if self.dvclive_dir is not None:
            from dvclive import Live
            from sim2real.io import atomic_outputs
            outputs = self._outputs
            if outputs is None:
                self._own_outputs = atomic_outputs()
                outputs = self._own_outputs.__enter__()
            try:
                live_tmp = outputs.dir(self.dvclive_dir)
                self.live = Live(dir=str(live_tmp), save_dvc_exp=False, dvcyaml=None, report=None)
            except BaseException:
                self.__exit__(*sys.exc_info())
                raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            try:
                if self.live is not None:
                    self.live.end()
                    self.live = None
            finally:
                own, self._own_outputs = self._own_outputs, None
                if own is not None:  # rename the DVCLive folder into place (or drop it on an error)
                    own.__exit__(exc_type, exc, tb)
        finally:
            if self.run is not None:
                self.run.finish(exit_code=0 if exc_type is None else 1)
                self.run = None
                if self._run_dir is not None:
                    _wait_for_run_file(self._run_dir)

    # ------------------------------------------------------------------ logging
    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log scalar metrics (nested dicts flattened with ``/``).

        ``step`` None: final numbers (W&B run summary; DVCLive ``metrics.json``).
        ``step`` an int: one point of a curve (W&B history at that step + summary; DVCLive history
        ``plots/metrics/<name>.tsv`` + summary). Steps must not decrease (a W&B rule).
        Non-finite values go to W&B as they are and to DVCLive as strings ("nan"/"inf").
        """
        flat = flatten_metrics(metrics)
        if step is None:
            self.summary(flat)
            return
        step = int(step)
        if step < self._step:
            raise ValueError(f"Tracker.log: step {step} is lower than the last step {self._step}")
        self._step = step
        if self.run is not None:
            self.run.log(flat, step=step)
        if self.live is not None:
            self.live.step = step
            for k, v in flat.items():
                self.live.log_metric(k, v, plot=True)
            self.live.make_summary()

    def log_image(self, name: str, rgb_u8: np.ndarray, step: int | None = None) -> None:
        """Log an RGB uint8 (H, W, 3) image (e.g. a sample grid) to W&B and DVCLive."""
        arr = np.asarray(rgb_u8)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"log_image '{name}': expected (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
        if self.run is not None:
            import wandb
            if step is not None:
                if int(step) < self._step:
                    raise ValueError(f"Tracker.log_image: step {step} is lower than the last step {self._step}")
                self._step = int(step)
            # without a step the image joins the current step (it does not advance W&B's counter)
            self.run.log({name: wandb.Image(arr)}, step=self._step)
        if self.live is not None:
            from PIL import Image
            fname = name if name.lower().endswith((".png", ".jpg", ".jpeg")) else f"{name}.png"
            self.live.log_image(fname, Image.fromarray(arr))

    def run_info(self, values: Mapping[str, Any]) -> None:
        """Wall-clock timings and run history (``seconds``, ``resumed_from``, ...): W&B summary only.

        They differ between two runs of one commit, so they never go to DVCLive's ``metrics.json``
        (a DVC metric): a reviewer's ``dvc metrics diff`` must show only real changes."""
        if self.run is not None:
            self.run.summary.update(flatten_metrics(values))

    def summary(self, values: Mapping[str, Any]) -> None:
        """Set final numbers (W&B run summary; DVCLive metrics.json), nested dicts flattened."""
        flat = flatten_metrics(values)
        if self.run is not None:
            self.run.summary.update(flat)
        if self.live is not None:
            for k, v in flat.items():
                self.live.log_metric(k, v, plot=False)
            self.live.make_summary()


_LOG_HEADER = 7          # W&B's run file: LevelDB-log framing, 7-byte file header, 32 KiB blocks
_LOG_BLOCK = 32768


def _wandb_records(path: Path) -> list[bytes]:
    """Raw protobuf records of a ``run-*.wandb`` file (LevelDB log format: crc, length, type)."""
    import struct
    data = path.read_bytes()
    if not data.startswith(b":W&B"):
        raise ValueError(f"{path}: not a W&B run file")
    pos, buf, out = _LOG_HEADER, b"", []
    while pos + 7 <= len(data):
        left = _LOG_BLOCK - pos % _LOG_BLOCK
        if left < 7:                      # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        chunk = data[pos:pos + length]
        pos += length
        if kind == 0 and length == 0:     # zero padding: end of written data
            break
        if kind == 1:                     # FULL
            out.append(chunk)
        elif kind == 2:                   # FIRST
            buf = chunk
        elif kind == 3:                   # MIDDLE
            buf += chunk
        elif kind == 4:                   # LAST
            out.append(buf + chunk)
            buf = b""
    return out


def _has_exit_record(path: Path) -> bool:
    from wandb.proto import wandb_internal_pb2
    for raw in reversed(_wandb_records(path)):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(raw)
        if rec.WhichOneof("record_type") == "exit":
            return True
    return False


def _wait_for_run_file(run_dir: Path, timeout_s: float = 30.0) -> bool:
    """Wait until wandb's service has written the run's exit record (``finish()`` can return
    before the file is flushed under load), so the run directory is complete when the stage ends."""
    import time
    deadline = time.monotonic() + timeout_s
    while True:
        files = sorted(run_dir.glob("run-*.wandb"))
        try:
            if files and _has_exit_record(files[0]):
                return True
        except Exception:  # noqa: BLE001 - a half-written record: keep waiting
            pass
        if time.monotonic() > deadline:
            warnings.warn(f"{run_dir}: W&B run file not complete after {timeout_s:.0f} s", stacklevel=3)
            return False
        time.sleep(0.05)


def read_offline_run(run_dir: str | Path) -> dict:
    """Decode an offline W&B run folder (for tests and debugging).

    Returns {"name", "group", "project", "job_type", "tags", "config", "summary", "history"}:
    ``summary`` the final value of every key, ``history`` one dict per logged step. Nested keys
    (e.g. an image's ``path``) are joined with ".".
    """
    import json
    from wandb.proto import wandb_internal_pb2
    files = sorted(Path(run_dir).glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no run-*.wandb file")

    def key(item) -> str:
        return item.key or ".".join(item.nested_key)

    out: dict[str, Any] = {"summary": {}, "history": [], "config": {}, "tags": []}
    for raw in _wandb_records(files[0]):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.update(name=r.display_name, group=r.run_group, project=r.project, job_type=r.job_type,
                       tags=list(r.tags))
            out["config"].update({key(i): json.loads(i.value_json) for i in r.config.update})
        elif kind == "config":
            out["config"].update({key(i): json.loads(i.value_json) for i in rec.config.update})
        elif kind == "summary":
            out["summary"].update({key(i): json.loads(i.value_json) for i in rec.summary.update})
        elif kind == "history":
            out["history"].append({key(i): json.loads(i.value_json) for i in rec.history.item})
    return out


def offline_runs(wandb_root: str | Path = ".") -> list[Path]:
    """Offline run folders under ``<wandb_root>/wandb/``, oldest first."""
    return sorted(Path(wandb_root, "wandb").glob("offline-run-*"))


if __name__ == "__main__":  # pragma: no cover - manual smoke test
    with Tracker("smoke", "test", {"a": 1}, tracking={"project": "sim2real", "entity": None}) as t:
        t.log({"x": 1.0})
    print(t.name, file=sys.stderr)
