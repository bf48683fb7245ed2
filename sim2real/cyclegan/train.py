"""CycleGAN training: unpaired random crops, LSGAN + cycle + identity losses, resumable loop.

Objective (Zhu et al. 2017, Eq. 3 plus the identity term of Sec. 5.2), with G: A→B, F: B→A and
LSGAN adversarial terms (Mao et al. 2017)::

    L_G = (D_B(G(a)) − 1)² + (D_A(F(b)) − 1)²
          + λ (|F(G(a)) − a|₁ + |G(F(b)) − b|₁)
          + λ_idt·λ (|G(b) − b|₁ + |F(a) − a|₁)
    L_D_B = ½ [(D_B(b) − 1)² + D_B(pool(G(a)))²]      (L_D_A likewise)

Adam (lr 2e-4, β1 0.5), learning rate constant for the first part of training and decayed
linearly to zero over the rest (``decay_start`` 0.5 = the paper's "second half"), image
history pool of 50, weights N(0, 0.02), instance norm. Frames (1242×375) are not square: each
sample is a random ``crop_px`` square crop taken after a random rescale by a factor in
``scale_range`` (scale jitter), with a random horizontal flip.

Determinism: the weights are initialised from ``torch.manual_seed(seed)`` and every random
draw of the loop (which frame, crop, scale, flip, pool swap) comes from one numpy Generator
whose state is stored in each checkpoint, so on CPU an interrupted run that resumes from its
last checkpoint ends with the same weights as an uninterrupted one.

References
----------
Zhu, Park, Isola, Efros, ICCV 2017 (arXiv:1703.10593); Mao et al., ICCV 2017 (LSGAN);
Shrivastava et al., CVPR 2017 (history pool); Kingma & Ba, ICLR 2015 (Adam).
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import pandas as pd
import torch
from torch import nn

from sim2real.cyclegan.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from sim2real.cyclegan.networks import ImagePool, PatchDiscriminator, ResnetGenerator, init_weights, lsgan_loss
from sim2real.errors import ConfigError, DataError
from sim2real.formats.images import read_rgb
from sim2real.io import atomic_file
from sim2real.parallel import check_device

log = logging.getLogger(__name__)

#: keys of the ``cyclegan.train`` section that do not change the trained weights (not hashed).
OPERATIONAL_KEYS = ("checkpoint_every", "resume", "on_params_change", "log_every")

LOSS_NAMES = ("loss_G", "loss_G_adv_A2B", "loss_G_adv_B2A", "loss_cycle_A", "loss_cycle_B",
              "loss_idt_A", "loss_idt_B", "loss_D_A", "loss_D_B")


@dataclass(frozen=True)
class CycleGANTrainConfig:
    """Training hyper-parameters (the ``cyclegan.train`` params section, plus seed and device)."""

    ngf: int = 16
    n_blocks: int = 3
    ndf: int = 32
    d_layers: int = 3
    init_gain: float = 0.02
    crop_px: int = 128
    scale_range: tuple[float, float] = (0.8, 1.2)
    flip: bool = True
    batch_size: int = 1
    iterations: int = 300
    epochs: float | None = None
    decay_start: float = 0.5
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    amp: bool = True
    checkpoint_every: int = 50
    resume: bool = True
    on_params_change: str = "restart"
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        def bad(key, why):
            raise ConfigError(f"cyclegan.train.{key}: {why}")
        if self.crop_px < 16 or self.crop_px % 4:
            bad("crop_px", f"must be a multiple of 4 and >= 16, got {self.crop_px}")
        if self.crop_px < 3 * 2 ** self.d_layers:
            bad("crop_px", f"must be >= {3 * 2 ** self.d_layers} for a {self.d_layers}-layer PatchGAN, got {self.crop_px}")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            bad("scale_range", f"need 0 < min <= max, got {list(self.scale_range)}")
        if self.batch_size < 1:
            bad("batch_size", f"must be >= 1, got {self.batch_size}")
        if self.iterations < 1 and not self.epochs:
            bad("iterations", f"must be >= 1, got {self.iterations}")
        if not 0 <= self.decay_start <= 1:
            bad("decay_start", f"must be in [0, 1], got {self.decay_start}")
        if self.lr <= 0:
            bad("lr", f"must be > 0, got {self.lr}")
        if self.checkpoint_every < 1:
            bad("checkpoint_every", f"must be >= 1, got {self.checkpoint_every}")
        if self.on_params_change not in ("restart", "error"):
            bad("on_params_change", f"must be 'restart' or 'error', got '{self.on_params_change}'")
        check_device(self.device, "compute.device")

    def hashed(self) -> dict[str, Any]:
        """The settings that determine the trained weights (what the checkpoint hash covers)."""
        d = asdict(self)
        for k in OPERATIONAL_KEYS + ("device", "amp"):
            d.pop(k, None)
        return d

    def total_iterations(self, n_a: int, n_b: int) -> int:
        """``iterations``, or ``epochs`` × max(|A|, |B|) / batch_size when ``epochs`` is set."""
        if self.epochs:
            return max(1, int(round(self.epochs * max(n_a, n_b) / self.batch_size)))
        return int(self.iterations)


def lr_factor(iteration: int, total: int, decay_start: float) -> float:
    """Learning-rate multiplier at 0-based ``iteration``: 1 until ``decay_start``·total, then linear to 0.

    The last iteration still gets a small positive rate (1 / number of decay iterations).
    """
    start = int(round(decay_start * total))
    if iteration < start or total <= start:
        return 1.0
    return (total - iteration) / (total - start)


# --------------------------------------------------------------------------------- data
class CropSampler:
    """Random scale-jittered square crops from a list of frame files (RGB uint8 → [-1, 1] tensors).

    Frames are read with :func:`sim2real.formats.images.read_rgb`; up to ``cache_frames`` decoded
    frames are kept in memory (the demo's tens of frames all fit; full vKITTI2 is read on demand).
    """

    def __init__(self, paths: Sequence[str | Path], crop_px: int, scale_range: tuple[float, float],
                 flip: bool = True, cache_frames: int = 512, name: str = "domain"):
        if len(paths) == 0:
            raise DataError(None, f"{name}: no frames to train on")
        self.paths = [Path(p) for p in paths]
        self.crop_px = int(crop_px)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.flip = flip
        self.cache_frames = cache_frames
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def frame(self, i: int) -> np.ndarray:
        img = self._cache.get(i)
        if img is None:
            img = read_rgb(self.paths[i])
            if len(self._cache) < self.cache_frames:
                self._cache[i] = img
        return img

    def crop(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One random crop: rescale by s ~ U(scale_range), crop ``crop_px`` square, maybe flip."""
        h, w = img.shape[:2]
        s = float(rng.uniform(*self.scale_range))
        src = max(4, min(int(round(self.crop_px / s)), h, w))  # source square side in frame px
        y0 = int(rng.integers(0, h - src + 1))
        x0 = int(rng.integers(0, w - src + 1))
        patch = img[y0:y0 + src, x0:x0 + src]
        if src != self.crop_px:
            interp = cv2.INTER_AREA if src > self.crop_px else cv2.INTER_LINEAR
            patch = cv2.resize(patch, (self.crop_px, self.crop_px), interpolation=interp)
        if self.flip and rng.random() < 0.5:
            patch = patch[:, ::-1]
        return np.ascontiguousarray(patch)

    def sample(self, rng: np.random.Generator, batch_size: int = 1) -> torch.Tensor:
        """(batch_size, 3, crop_px, crop_px) float32 in [-1, 1]."""
        crops = [self.crop(self.frame(int(rng.integers(len(self.paths)))), rng) for _ in range(batch_size)]
        arr = np.stack(crops).astype(np.float32) / 127.5 - 1.0
        return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------------- model
class CycleGAN(nn.Module):
    """The four networks: ``g_ab`` (A→B, sim→real), ``g_ba``, ``d_a`` (judges A), ``d_b`` (judges B)."""

    def __init__(self, cfg: CycleGANTrainConfig):
        super().__init__()
        self.g_ab = ResnetGenerator(cfg.ngf, cfg.n_blocks)
        self.g_ba = ResnetGenerator(cfg.ngf, cfg.n_blocks)
        self.d_a = PatchDiscriminator(cfg.ndf, cfg.d_layers)
        self.d_b = PatchDiscriminator(cfg.ndf, cfg.d_layers)
        for net in (self.g_ab, self.g_ba, self.d_a, self.d_b):
            init_weights(net, cfg.init_gain)

    def generators(self) -> list[nn.Parameter]:
        return list(self.g_ab.parameters()) + list(self.g_ba.parameters())

    def discriminators(self) -> list[nn.Parameter]:
        return list(self.d_a.parameters()) + list(self.d_b.parameters())


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def generator_objective(m: CycleGAN, real_a: torch.Tensor, real_b: torch.Tensor, cfg: CycleGANTrainConfig):
    """Total generator loss L_G, its parts (floats), and the fakes (G(a), F(b)).

    The discriminators are evaluated but receive no gradient updates from this loss.
    """
    lam = cfg.lambda_cycle
    fake_b = m.g_ab(real_a)
    rec_a = m.g_ba(fake_b)
    fake_a = m.g_ba(real_b)
    rec_b = m.g_ab(fake_a)
    parts = {
        "loss_G_adv_A2B": lsgan_loss(m.d_b(fake_b), True),
        "loss_G_adv_B2A": lsgan_loss(m.d_a(fake_a), True),
        "loss_cycle_A": lam * torch.mean(torch.abs(rec_a.float() - real_a)),
        "loss_cycle_B": lam * torch.mean(torch.abs(rec_b.float() - real_b)),
    }
    if cfg.lambda_identity > 0:
        w = cfg.lambda_identity * lam
        parts["loss_idt_A"] = w * torch.mean(torch.abs(m.g_ab(real_b).float() - real_b))
        parts["loss_idt_B"] = w * torch.mean(torch.abs(m.g_ba(real_a).float() - real_a))
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in parts.items()}, fake_b, fake_a


def discriminator_objective(d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """LSGAN discriminator loss ½[(D(real) − 1)² + D(fake)²] (fake detached)."""
    return 0.5 * (lsgan_loss(d(real), True) + lsgan_loss(d(fake.detach()), False))


class Trainer:
    """Networks, optimisers, pools and RNG of one training run; :meth:`step` runs one iteration."""

    def __init__(self, cfg: CycleGANTrainConfig):
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.model = CycleGAN(cfg).to(self.device)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.model.generators(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.model.discriminators(), lr=cfg.lr, betas=betas)
        use_scaler = cfg.amp and self.device.type == "cuda"
        self.scaler_g = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.pool_a = ImagePool(cfg.pool_size)
        self.pool_b = ImagePool(cfg.pool_size)
        self.rng = np.random.default_rng(cfg.seed)
        self.iteration = 0
        self.history: dict[str, list[float]] = {k: [] for k in ("step", "lr", *LOSS_NAMES)}

    def set_lr(self, lr: float) -> None:
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr

    def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """One CycleGAN iteration on a batch: update G and F, then D_A and D_B. Returns the losses."""
        m, cfg = self.model, self.cfg
        real_a, real_b = real_a.to(self.device), real_b.to(self.device)
        # generators (discriminators frozen)
        m.d_a.requires_grad_(False)
        m.d_b.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        with _autocast(self.device, cfg.amp):
            loss_g, parts, fake_b, fake_a = generator_objective(m, real_a, real_b, cfg)
        self.scaler_g.scale(loss_g).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        # discriminators, on history-pooled fakes
        m.d_a.requires_grad_(True)
        m.d_b.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        pooled_b = self.pool_b.query(fake_b.detach().float(), self.rng)
        pooled_a = self.pool_a.query(fake_a.detach().float(), self.rng)
        with _autocast(self.device, cfg.amp):
            loss_d_b = discriminator_objective(m.d_b, real_b, pooled_b)
            loss_d_a = discriminator_objective(m.d_a, real_a, pooled_a)
        self.scaler_d.scale(loss_d_a + loss_d_b).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        out = {"loss_G": float(loss_g.detach()), **parts,
               "loss_D_A": float(loss_d_a.detach()), "loss_D_B": float(loss_d_b.detach())}
        for k in LOSS_NAMES:
            out.setdefault(k, 0.0)
        return out

    # ------------------------------------------------------------------ checkpoints
    def state(self, params_hash: str) -> dict[str, Any]:
        cpu = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        return {
            "format": CHECKPOINT_FORMAT,
            "iteration": int(self.iteration),
            "params_hash": params_hash,
            "models": cpu,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "pool_a": self.pool_a.state(),
            "pool_b": self.pool_b.state(),
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "history": {k: list(v) for k, v in self.history.items()},
        }

    def load_state(self, state: dict[str, Any], path: Path) -> None:
        try:
            self.model.load_state_dict(state["models"], strict=True)
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            if state.get("scaler_g"):
                self.scaler_g.load_state_dict(state["scaler_g"])
            if state.get("scaler_d"):
                self.scaler_d.load_state_dict(state["scaler_d"])
            self.pool_a.load_state(state.get("pool_a", []), self.device)
            self.pool_b.load_state(state.get("pool_b", []), self.device)
            self.rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise DataError(path, f"checkpoint does not match the configured networks ({str(exc)[:300]}); "
                                  "delete it to restart training from scratch") from None
        self.iteration = int(state["iteration"])
        self.history = {k: list(state["history"].get(k, [])) for k in self.history}


@dataclass
class TrainResult:
    trainer: Trainer
    total_iterations: int
    resumed_from: int          # iteration the run started at (0 = fresh)
    restarted_reason: str      # why an existing checkpoint was not used ("" when none / resumed)
    seconds: float


def train(
    cfg: CycleGANTrainConfig,
    frames_a: Sequence[str | Path],
    frames_b: Sequence[str | Path],
    checkpoint_dir: str | Path,
    *,
    params_hash: str,
    on_iteration: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train a CycleGAN A→B, checkpointing to ``checkpoint_dir/last.pt`` and resuming from it.

    Parameters
    ----------
    frames_a, frames_b : image files of domain A (synthetic) and domain B (real train split).
    checkpoint_dir : folder of ``last.pt``; written every ``checkpoint_every`` iterations and at
        the end. With ``resume`` true an existing checkpoint whose ``params_hash`` matches is
        continued; one with another hash is ignored (``on_params_change: restart``) or refused
        (``error``); a corrupt one raises :class:`DataError`.
    params_hash : see :func:`sim2real.cyclegan.checkpoint.params_hash`.
    on_iteration : called as ``on_iteration(step, losses)`` after every iteration (1-based step),
        e.g. for logging.
    """
    t0 = time.perf_counter()
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME
    sampler_a = CropSampler(frames_a, cfg.crop_px, cfg.scale_range, cfg.flip, name="domain A (synthetic)")
    sampler_b = CropSampler(frames_b, cfg.crop_px, cfg.scale_range, cfg.flip, name="domain B (real train)")
    total = cfg.total_iterations(len(sampler_a), len(sampler_b))
    trainer = Trainer(cfg)
    restarted = ""
    if cfg.resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        if state["params_hash"] != params_hash:
            msg = (f"checkpoint was trained with other params/data (hash {state['params_hash']} != {params_hash})")
            if cfg.on_params_change == "error":
                raise ConfigError(f"{ckpt_path}: {msg}; delete it or set cyclegan.train.on_params_change: restart")
            restarted = msg
            log.warning("%s: %s; restarting from scratch", ckpt_path, msg)
        else:
            trainer.load_state(state, ckpt_path)
            log.info("resuming from %s at iteration %d", ckpt_path, trainer.iteration)
    resumed_from = trainer.iteration
    Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    for it in range(trainer.iteration, total):
        lr = cfg.lr * lr_factor(it, total, cfg.decay_start)
        trainer.set_lr(lr)
        real_a = sampler_a.sample(trainer.rng, cfg.batch_size)
        real_b = sampler_b.sample(trainer.rng, cfg.batch_size)
        losses = trainer.step(real_a, real_b)
        trainer.iteration = it + 1
        trainer.history["step"].append(it + 1)
        trainer.history["lr"].append(lr)
        for k in LOSS_NAMES:
            trainer.history[k].append(losses[k])
        if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == total:
            save_checkpoint(ckpt_path, trainer.state(params_hash))
        if on_iteration is not None:
            on_iteration(it + 1, {**losses, "lr": lr})
    return TrainResult(trainer, total, resumed_from, restarted, time.perf_counter() - t0)


# --------------------------------------------------------------------------------- outputs
def domain_frames(frames: pd.DataFrame, real: pd.DataFrame, variations: Sequence[str], *,
                  frames_path: str | Path = "frames.csv", real_path: str | Path = "real_frames.csv"):
    """Select the training domains: A = synthetic frames of ``variations``, B = real rows with split == "train".

    Real ``val`` rows are never returned (they are held out for evaluation).

    Returns
    -------
    (paths_a, paths_b) : lists of image paths.
    """
    for df, path, cols in ((frames, frames_path, ("frame_id", "variation", "image")),
                           (real, real_path, ("image_id", "split", "image"))):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DataError(path, f"missing column(s) {missing}")
    if isinstance(variations, str) or not variations:
        raise ConfigError(f"cyclegan.variations must be a non-empty list, got {variations!r}")
    have = set(frames["variation"].astype(str))
    unknown = [v for v in variations if v not in have]
    if unknown:
        raise ConfigError(f"cyclegan.variations: {unknown} not in {frames_path} (has {sorted(have)})")
    a = frames[frames["variation"].astype(str).isin([str(v) for v in variations])]
    b = real[real["split"].astype(str) == "train"]
    if b.empty:
        raise DataError(real_path, "no rows with split == 'train' (domain B is the real train split)")
    return [str(p) for p in a["image"]], [str(p) for p in b["image"]]


def data_fingerprint(paths_a: Sequence[str | Path], paths_b: Sequence[str | Path]) -> str:
    """Paths and byte sizes of both domains' files (cheap; changes when the inputs change)."""
    parts = []
    for tag, paths in (("A", paths_a), ("B", paths_b)):
        for p in paths:
            p = Path(p)
            size = p.stat().st_size if p.exists() else -1
            parts.append(f"{tag}:{p.as_posix()}:{size}")
    return "\n".join(parts)


@torch.inference_mode()
def sample_grid(model: CycleGAN, frame_a: np.ndarray, frame_b: np.ndarray, *, width_px: int = 1242) -> np.ndarray:
    """A 2×2 grid of whole frames: [sim, sim→real] over [real, real→sim], each resized to ``width_px`` wide.

    Returns (H, 2·width_px, 3) uint8 RGB.
    """
    from sim2real.cyclegan.translate import translate_image

    was_training = model.training
    model.eval()
    rows = []
    for img, gen in ((frame_a, model.g_ab), (frame_b, model.g_ba)):
        out = translate_image(gen, img)
        h = int(round(img.shape[0] * width_px / img.shape[1]))
        rows.append(np.concatenate([cv2.resize(x, (width_px, h), interpolation=cv2.INTER_AREA) for x in (img, out)], 1))
    model.train(was_training)
    return np.concatenate(rows, 0)


def write_losses_csv(path: str | Path, history: dict[str, list[float]]) -> None:
    """One row per iteration: step, lr and every loss (for ``dvc plots``)."""
    df = pd.DataFrame({k: history[k] for k in ("step", "lr", *LOSS_NAMES)})
    df["step"] = df["step"].astype(int)
    with atomic_file(path) as fh:
        df.to_csv(fh, index=False, float_format="%.6g")


def final_losses(history: dict[str, list[float]], fraction: float = 0.1) -> dict[str, float]:
    """Mean of each loss over the last ``fraction`` of iterations (less noisy than the last value)."""
    n = len(history["step"])
    k = max(1, int(round(n * fraction)))
    return {name: float(np.mean(history[name][-k:])) for name in LOSS_NAMES} if n else {}
