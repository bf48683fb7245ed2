"""Training a YOLO detector with ultralytics, offline and hermetic.

The model is built from an ultralytics model yaml (``yolov5l-p6.yaml`` = YOLOv5l6: the
YOLOv5 backbone and neck with a P6 output at stride 64 and ultralytics' anchor-free, decoupled
"u" head, as in ``yolov5lu``; ``yolov5n-p6.yaml`` for the demo), optionally initialised from a
local ``.pt``. Everything ultralytics would fetch or switch on by itself is pinned off by
:mod:`sim2real.detect.offline`.

``weights`` resolution (:func:`resolve_weights`): None = from scratch; a bare file name is looked
up in ``weights_dir``, a path must lie in ``weights_dir`` (the folder is the train stage's DVC
dependency, so replacing a file there retrains); a missing file is fetched only when
``download: true`` *and* online (ultralytics' asset download into ``weights_dir``). Any other
case raises ConfigError naming ``train.weights``. The file is then loaded weights-only and checked
(:func:`sim2real.detect.checkpoint.check_checkpoint`) and handed to ultralytics as ``pretrained``:
its trainer builds the model from ``model`` and transfers every tensor of matching name and shape
(all but the class-count-dependent head layers when the class counts differ).

References
----------
Jocher et al., ultralytics YOLOv5 / YOLOv8 (2020-2024), https://github.com/ultralytics/ultralytics.
"""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from sim2real.errors import ConfigError
from sim2real.detect import offline
from sim2real.detect.checkpoint import check_checkpoint, ultralytics_message
from sim2real.parallel import check_device

DROP_COLUMNS = ("time",)  # wall-clock column of results.csv: not a metric, never identical


@dataclass(frozen=True)
class DetectTrainConfig:
    """The ``train`` params section (see params.yaml for meanings and defaults)."""

    model: str = "yolov5n-p6.yaml"
    weights: str | None = None
    download: bool = False
    weights_dir: str = "weights"
    imgsz: int = 512
    epochs: int = 8
    batch: int = 4
    device: str | int = "cpu"
    workers: int = 0
    seed: int = 0
    deterministic: bool = True
    rect: bool = True
    cache: bool | str = False
    patience: int = 100
    optimizer: str = "AdamW"
    lr0: float = 0.002
    lrf: float = 0.01             # final lr = lr0 * lrf (linear schedule)
    warmup_epochs: float = 0.0    # ultralytics warms up for max(warmup_epochs x batches/epoch, 100) iterations
    nbs: int = 4                  # nominal batch: gradients accumulate over max(round(nbs / batch), 1) batches
    mosaic: float = 1.0           # mosaic probability (ultralytics turns it off under rect)
    val: bool = False             # validate every epoch, keep the best (false: never in training; best.pt = last epoch)
    amp: bool = True  # only used on CUDA; always off on CPU
    seeds: tuple[int, ...] = (0,)  # training seeds of the study (one run each); ``seed`` is this run's

    def __post_init__(self) -> None:
        if not str(self.model).endswith((".yaml", ".yml")):
            raise ConfigError(f"train.model must be an ultralytics model yaml (e.g. yolov5l-p6.yaml), got {self.model!r}")
        if int(self.imgsz) <= 0 or int(self.epochs) <= 0 or int(self.batch) <= 0:
            raise ConfigError("train.imgsz, train.epochs and train.batch must be positive")
        if not self.seeds or not all(isinstance(x, int) and not isinstance(x, bool) for x in self.seeds):
            raise ConfigError(f"train.seeds must be a non-empty list of integers, got {list(self.seeds)!r}")

    @property
    def on_cuda(self) -> bool:
        return str(self.device).strip().lower() not in ("cpu", "mps")


def _inside(path: Path, folder: Path) -> bool:
    """Lexically inside ``folder`` (a symbolic link in the folder counts as inside)."""
    path, folder = Path(os.path.abspath(path)), Path(os.path.abspath(folder))
    return path == folder or folder in path.parents


def resolve_weights(weights: str | None, weights_dir: str | Path, download: bool) -> Path | None:
    """``weights_dir/<name>`` or a path inside ``weights_dir`` -> download (online and asked for) -> ConfigError."""
    if weights in (None, "", "none", "None"):
        return None
    folder = Path(weights_dir)
    p = Path(weights)
    candidate = p if p.is_absolute() or len(p.parts) > 1 else folder / p
    if not _inside(candidate, folder):
        raise ConfigError(f"train.weights={weights!r}: {candidate} is outside train.weights_dir ({folder}), the "
                          f"folder train@<variant> depends on in dvc.yaml, so DVC would not retrain when it changes; "
                          f"put the file (or a symbolic link to it) in {folder} and set train.weights: {p.name}")
    if candidate.is_file():
        return candidate
    if download:
        prev = os.environ.get("YOLO_OFFLINE")
        os.environ["YOLO_OFFLINE"] = "false"
        try:
            from ultralytics.utils import is_online
            from ultralytics.utils.downloads import attempt_download_asset
            if not is_online():
                raise ConfigError(f"train.weights={weights!r}: not found locally and no network to download it")
            folder.mkdir(parents=True, exist_ok=True)
            got = Path(attempt_download_asset(str(folder / p.name)))
        finally:
            os.environ["YOLO_OFFLINE"] = prev or "true"
        if got.is_file():
            return got
    raise ConfigError(f"train.weights={weights!r}: no such file ({candidate}); put a local .pt in {folder}, "
                      "set null to train from scratch, or set train.download: true to fetch it when online")


def pretrained_weights(cfg: "DetectTrainConfig") -> Path | None:
    """The resolved ``train.weights`` file, loaded weights-only and checked (ConfigError otherwise)."""
    weights = resolve_weights(cfg.weights, cfg.weights_dir, cfg.download)
    if weights is not None:
        check_checkpoint(weights, "train.weights")
    return weights


def _trainer_class():
    """ultralytics' DetectionTrainer, used with the offline patches applied (also in DDP workers)."""
    offline.apply_patches()
    from ultralytics.models.yolo.detect import DetectionTrainer

    class OfflineDetectionTrainer(DetectionTrainer):
        """DetectionTrainer whose module import applies sim2real's offline patches (DDP-safe).

        With ``train.val: false`` it makes no pass over the val set at all: ultralytics would
        still validate the last epoch and then ``best.pt`` (the same weights) again, and the
        ``evaluate@`` stage validates them a third time. The last epoch's row of ``results.csv``
        keeps its metric columns, as NaN; ``best.pt`` is the last epoch and is stripped of the
        optimizer as ultralytics' ``final_eval`` does.
        """

        def validate(self):
            if self.args.val:
                return super().validate()
            fitness = -float(self.loss.detach().cpu())  # ultralytics' own fallback: the loss
            if self.best_fitness is None or self.best_fitness < fitness:
                self.best_fitness = fitness
            keys = [*self.validator.metrics.keys, *self.label_loss_items(prefix="val")]
            return {k: float("nan") for k in keys}, fitness

        def final_eval(self):
            if self.args.val:
                return super().final_eval()
            from ultralytics.utils import RANK
            from ultralytics.utils.torch_utils import strip_optimizer

            if RANK in {-1, 0}:
                ckpt = strip_optimizer(self.last) if self.last.exists() else {}
                if self.best.exists():
                    strip_optimizer(self.best, updates={"train_results": ckpt.get("train_results")})

    OfflineDetectionTrainer.__module__ = __name__
    OfflineDetectionTrainer.__qualname__ = "OfflineDetectionTrainer"
    return OfflineDetectionTrainer


_TRAINER = None


def __getattr__(name: str):  # PEP 562: DDP workers unpickle the trainer class by reference
    global _TRAINER
    if name == "OfflineDetectionTrainer":
        if _TRAINER is None:
            _TRAINER = _trainer_class()
        return _TRAINER
    raise AttributeError(name)


def train_args(cfg: DetectTrainConfig, data_yaml: Path, save_dir: Path, pretrained: Path | None = None) -> dict:
    """The keyword arguments passed to ``YOLO.train`` (explicit, so the run is reproducible).

    ``pretrained``: the resolved weights file (:func:`pretrained_weights`) or None (from scratch).
    ultralytics' trainer loads a path itself, also in every DDP worker (``pretrained=True`` would
    mean "the model object in this process", which DDP workers do not have).
    """
    return dict(
        data=str(data_yaml), epochs=int(cfg.epochs), imgsz=int(cfg.imgsz), batch=int(cfg.batch),
        device=str(cfg.device), workers=int(cfg.workers), seed=int(cfg.seed), deterministic=bool(cfg.deterministic),
        rect=bool(cfg.rect), cache=cfg.cache, patience=int(cfg.patience), optimizer=str(cfg.optimizer),
        lr0=float(cfg.lr0), lrf=float(cfg.lrf), warmup_epochs=float(cfg.warmup_epochs), nbs=int(cfg.nbs),
        mosaic=float(cfg.mosaic), amp=bool(cfg.amp) and cfg.on_cuda, plots=False, save=True, val=bool(cfg.val),
        project=str(save_dir.parent.resolve()), name=save_dir.name, exist_ok=True, verbose=False,
        pretrained=str(pretrained) if pretrained is not None else False,
    )


def train(cfg: DetectTrainConfig, data_yaml: Path, save_dir: Path, scratch: Path,
          callbacks: Mapping[str, Callable] | None = None, torch_threads: int | None = None) -> Path:
    """Train into ``save_dir`` (ultralytics run folder); returns ``save_dir/weights/best.pt``.

    ``scratch``: a folder outside the outputs for ultralytics' settings (see
    :func:`sim2real.detect.offline.configure`). ``callbacks``: ultralytics callbacks added to the
    run (event name -> function of the trainer). ``last.pt`` (optimizer state, resumable) is
    deleted: only ``best.pt`` is a stage output. ``torch_threads``: CPU threads of torch during the
    run (``compute.torch_threads``; None keeps ultralytics' choice, ``cpu_count - 1``).
    """
    check_device(cfg.device, "train.device", gpu_indices=True)  # one line, not ultralytics' multi-line error
    offline.configure(scratch)
    if torch_threads is not None:
        offline.set_torch_threads(torch_threads)
    weights = pretrained_weights(cfg)
    from ultralytics import YOLO

    try:
        model = YOLO(cfg.model, task="detect")
    except TypeError as exc:  # refused by the restricted (eval-free) yaml parser, e.g. a code 'activation'
        raise ConfigError(f"train.model={cfg.model!r}: {ultralytics_message(exc)}") from None
    for event, fn in (callbacks or {}).items():
        model.add_callback(event, fn)
    trainer = __getattr__("OfflineDetectionTrainer")
    model.train(trainer=trainer, **train_args(cfg, data_yaml, save_dir, weights))
    best = save_dir / "weights" / "best.pt"
    if not best.is_file():
        raise RuntimeError(f"{best}: training finished without writing best.pt")
    last = save_dir / "weights" / "last.pt"
    if last.exists():
        last.unlink()
    return best


def results_table(results_csv: str | Path) -> pd.DataFrame:
    """ultralytics' results.csv with stripped column names, without the wall-clock column."""
    df = pd.read_csv(results_csv)
    df.columns = [c.strip() for c in df.columns]
    return df.drop(columns=[c for c in DROP_COLUMNS if c in df.columns])


def finite_or_none(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
