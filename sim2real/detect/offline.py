"""Make ultralytics hermetic: offline, no hidden downloads, no integrations turning on by themselves.

Call :func:`configure` with the run's folder *before* anything imports ultralytics (it imports
ultralytics itself). What it does, and why:

* ``YOLO_OFFLINE=true`` (``is_online()`` then answers False without a DNS probe) and
  ``YOLO_AUTOINSTALL=false`` (no ``pip install`` of missing requirements at run time).
* ``ULTRALYTICS_SAFE_LOAD=true``: every checkpoint ultralytics loads is unpickled weights-only
  against its allow-list of model classes, and model yamls are parsed without ``eval``
  (:mod:`sim2real.detect.checkpoint`; a crafted ``.pt`` would otherwise run code when loaded).
* ``YOLO_CONFIG_DIR`` = ``<config_dir>``: ultralytics reads and writes its ``settings.json``
  there instead of ``~/.config/Ultralytics``; the settings are then set *explicitly* for the run:
  ``runs_dir``/``weights_dir``/``datasets_dir`` inside the run's folders, ``sync=False`` (no
  analytics events), and every integration callback off (``dvc``, ``wandb``, ``clearml``, ``comet``,
  ``mlflow``, ``raytune``, ``tensorboard``), so ultralytics' own DVCLive callback cannot start an
  experiment inside ``dvc repro``. Tracking is done in one place, :mod:`sim2real.tracking`.
* Fonts: ``check_det_dataset`` calls ``check_font("Arial.ttf")`` even with ``plots=False``,
  which downloads the font when it is not on the system. :func:`local_font` replaces it and
  returns matplotlib's bundled DejaVu Sans (plots label with it).
* AMP: on CUDA ultralytics' ``check_amp`` loads ``yolo26n.pt`` (a download) to compare FP32 and
  AMP outputs. :func:`local_amp_check` replaces it with the same comparison on the model being
  trained (a random image, FP32 vs autocast, finite and close outputs), so no weights are needed.
  On CPU AMP is off (ultralytics' own rule, and ``amp=False`` is passed).
* albumentations must not be importable: with it installed, ultralytics silently adds Blur,
  MedianBlur, ToGray, CLAHE and JPEG-quality augmentations to training, which would confound the
  blur study. :func:`assert_no_albumentations` raises instead of training.

The patches are applied at import of :mod:`sim2real.detect.train` too, so DDP workers (which
unpickle the trainer class by reference and import that module) get them as well.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from sim2real.detect import checkpoint

INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")


def assert_no_albumentations() -> None:
    """Raise RuntimeError when albumentations is importable (hidden blur augmentations)."""
    if importlib.util.find_spec("albumentations") is not None:
        raise RuntimeError("albumentations is installed: ultralytics would add hidden Blur/MedianBlur/ToGray/CLAHE "
                           "augmentations to training and confound the blur study; uninstall it "
                           "(`pip uninstall albumentations`)")


def set_env(config_dir: str | Path) -> None:
    """Environment for an offline, self-contained ultralytics (before importing it)."""
    config_dir = Path(config_dir).resolve()
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "true"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    checkpoint.enable_safe_load()


def local_font(font: str = "Arial.ttf"):
    """Stand-in for ultralytics' ``check_font``: a font file that ships with matplotlib, no download."""
    import matplotlib
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def local_amp_check(model) -> bool:
    """Stand-in for ultralytics' ``check_amp`` that needs no downloaded weights.

    Runs the model being trained on one random 256 px image in FP32 and under CUDA autocast and
    returns True when both outputs are finite and close (max abs difference below 0.5 px-score
    units, ultralytics' own tolerance, relative to the output scale). CPU/MPS: False.
    """
    import torch
    from ultralytics.utils import LOGGER

    device = next(model.parameters()).device
    if device.type != "cuda":
        return False
    try:
        was_training = model.training
        model.eval()
        stride = int(max(model.stride.max().item(), 32)) if hasattr(model, "stride") else 64
        size = max(256, stride * 4)
        gen = torch.Generator(device="cpu").manual_seed(0)
        im = torch.rand(1, 3, size, size, generator=gen).to(device)
        with torch.no_grad():
            a = model(im)
            with torch.autocast("cuda", enabled=True):
                b = model(im)
        a = a[0] if isinstance(a, (list, tuple)) else a
        b = b[0] if isinstance(b, (list, tuple)) else b
        a, b = a.float(), b.float()
        ok = bool(torch.isfinite(b).all()) and a.shape == b.shape and \
            float((a - b).abs().max()) <= 0.5 + 0.01 * float(a.abs().max())
        model.train(was_training)
    except Exception as exc:  # noqa: BLE001 - a failing check disables AMP, as ultralytics does
        LOGGER.warning(f"AMP: local check failed ({type(exc).__name__}: {exc}); training without AMP")
        return False
    LOGGER.info(f"AMP: local check {'passed' if ok else 'failed, AMP disabled'} (no download)")
    return ok


def apply_patches() -> None:
    """Replace ultralytics' downloading font and AMP checks (idempotent)."""
    import ultralytics.data.utils as data_utils
    import ultralytics.engine.trainer as trainer
    import ultralytics.utils.checks as checks
    import ultralytics.utils.plotting as plotting

    data_utils.check_font = local_font
    plotting.check_font = local_font
    checks.check_font = local_font
    trainer.check_amp = local_amp_check


def set_torch_threads(n: int) -> None:
    """Use ``n`` torch threads on the CPU, also after ultralytics selects the device.

    ultralytics' ``select_device`` (trainer, validator, predictor) resets
    ``torch.set_num_threads(NUM_THREADS)`` with ``NUM_THREADS = min(8, cpu_count - 1)``: one thread
    on a 2-core machine. Its module-level constant is what that call reads, so it is re-pointed too.
    """
    import torch
    import ultralytics.utils.torch_utils as torch_utils

    torch_utils.NUM_THREADS = int(n)
    torch.set_num_threads(int(n))


def configure(run_root: str | Path) -> dict:
    """Offline, explicit ultralytics settings for one run; returns the settings applied.

    ``run_root``: folder of the run; settings go to ``<run_root>/ultralytics/settings.json``,
    runs/weights/datasets dirs below it. Safe to call again for another run in the same process
    (the settings file is re-pointed).
    """
    assert_no_albumentations()
    run_root = Path(run_root).resolve()
    config_dir = run_root / "ultralytics"
    set_env(config_dir)
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR  # the first import reads YOLO_CONFIG_DIR

    here = Path(USER_CONFIG_DIR).resolve()
    inside = here == config_dir or config_dir in here.parents
    SETTINGS.file = (here if inside else config_dir) / "settings.json"  # re-point on a later run
    values = {
        "runs_dir": str(run_root / "runs"),
        "weights_dir": str(run_root / "weights_cache"),
        "datasets_dir": str(run_root / "datasets"),
        "sync": False,
        **{k: False for k in INTEGRATIONS},
    }
    SETTINGS.update(values)
    checkpoint.enable_safe_load()  # also when ultralytics was imported before set_env
    apply_patches()
    return values
