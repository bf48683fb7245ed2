"""CycleGAN translation throughput (frames/s) at full KITTI resolution, 1242×375.

Runs the A→B generator (trained weights from ``--weights`` or random weights of the demo /
full architecture) on synthetic frames, whole-frame and tiled, and prints medians with the
machine and versions. ``--device cuda`` adds float16 autocast (AMP) and float32 rows. Also
times ``--train-steps`` full CycleGAN training iterations (G + D updates, AMP with grad scaling
on CUDA) at the architecture's crop size, which exercises the training path on that device.

    python benchmarks/bench_cyclegan.py                       # CPU, demo architecture (< 1 min)
    python benchmarks/bench_cyclegan.py --device cuda --arch full --frames 64
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as in the stages (before torch loads OpenMP)

import argparse  # noqa: E402
import platform
import statistics
import time

import numpy as np
import torch

from sim2real.cyclegan.checkpoint import load_generator
from sim2real.cyclegan.networks import ResnetGenerator, init_weights
from sim2real.cyclegan.translate import translate_image

ARCH = {"demo": {"ngf": 16, "n_blocks": 3}, "full": {"ngf": 64, "n_blocks": 9}}
TRAIN = {"demo": {"ndf": 32, "crop_px": 128}, "full": {"ndf": 64, "crop_px": 256}}


def cli(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--arch", default="demo", choices=sorted(ARCH))
    ap.add_argument("--weights", default=None, help="generator_a2b.pt (overrides --arch)")
    ap.add_argument("--frames", type=int, default=6, help="frames timed per configuration")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--train-steps", type=int, default=4, help="training iterations timed (0 = skip)")
    ap.add_argument("--width", type=int, default=1242)
    ap.add_argument("--height", type=int, default=375)
    return ap.parse_args(argv)


def time_config(gen, frames, **kw) -> tuple[float, float]:
    """(median seconds per frame, frames/s over the run) after one warm-up frame."""
    translate_image(gen, frames[0], **kw)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    per = []
    t_all = time.perf_counter()
    for f in frames:
        t = time.perf_counter()
        translate_image(gen, f, **kw)  # returns uint8 on the host, so the GPU work is finished
        per.append(time.perf_counter() - t)
    total = time.perf_counter() - t_all
    return statistics.median(per), len(frames) / total


def time_training(arch: str, device: str, amp: bool, steps: int) -> float:
    """Median seconds per CycleGAN iteration (batch 1) after one warm-up iteration."""
    from sim2real.cyclegan.train import CycleGANTrainConfig, Trainer

    cfg = CycleGANTrainConfig(**ARCH[arch], **TRAIN[arch], amp=amp, device=device, seed=0)
    tr = Trainer(cfg)
    g = torch.Generator().manual_seed(0)
    a, b = (torch.rand(1, 3, cfg.crop_px, cfg.crop_px, generator=g) * 2 - 1 for _ in range(2))
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        losses = tr.step(a, b)  # reads the losses back to the host, so the step is finished
        if i:
            times.append(time.perf_counter() - t)
    if not all(np.isfinite(v) for v in losses.values()):
        raise SystemExit(f"non-finite training losses: {losses}")
    return statistics.median(times)


def main(argv=None) -> None:
    args = cli(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    if args.weights:
        gen = load_generator(args.weights, args.device)
        arch = f"weights {args.weights}"
    else:
        torch.manual_seed(0)
        gen = init_weights(ResnetGenerator(**ARCH[args.arch])).to(args.device).eval()
        arch = f"{args.arch} {ARCH[args.arch]} (random weights)"
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8) for _ in range(args.frames)]
    dev = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or platform.machine()
    print(f"# sim2real CycleGAN translate benchmark: {args.width}x{args.height}, {args.frames} frames, {arch}")
    print(f"# device {args.device} ({dev}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"python {platform.python_version()}")
    configs = [("whole", {"mode": "whole"}), ("tiled 512/64", {"mode": "tiled", "tile_px": 512, "overlap_px": 64})]
    rows = []
    for name, kw in configs:
        amps = [False, True] if args.device == "cuda" else [False]
        for amp in amps:
            med, fps = time_config(gen, frames, amp=amp, **kw)
            rows.append((f"{name}{' +AMP' if amp else ''}", med, fps))
    base = rows[0][2]
    print(f"{'translate':<20}{'median s/frame':>16}{'frames/s':>10}{'vs whole':>10}")
    for name, med, fps in rows:
        print(f"{name:<20}{med:>16.4f}{fps:>10.2f}{fps / base:>9.2f}x")
    if args.train_steps > 0:
        arch_name = args.arch if not args.weights else "demo"
        crop = TRAIN[arch_name]["crop_px"]
        print(f"{'train (' + arch_name + f', {crop}px)':<20}{'median s/iter':>16}{'iter/s':>10}")
        for amp in ([False, True] if args.device == "cuda" else [False]):
            med = time_training(arch_name, args.device, amp, args.train_steps)
            print(f"{'fp32' if not amp else 'AMP fp16':<20}{med:>16.4f}{1 / med:>10.2f}")


if __name__ == "__main__":
    main()
