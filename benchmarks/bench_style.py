"""Benchmark of the style methods on one 1242x375 frame (a script, not a timed test).

Side by side, in one run on one device, seconds per 1242x375 frame for:

1. **nst fast**: coarse-to-fine Gatys (``--scales`` / ``--steps``, ending at full resolution so
   its final loss is the full-resolution Gatys loss), batch ``--batch``, autocast with ``--amp``
   (CUDA only);
2. **nst plain**: Gatys at full resolution from the content image, same objective, optimiser and
   step size, for ``--plain-steps`` steps. *Equal loss*: the number of plain steps needed to
   reach the fast path's final loss is
   - measured, when plain reaches it within ``--plain-steps`` (use a large value on a GPU), else
   - a measured **lower bound** (plain needs more than ``--plain-steps`` steps, so the speed-up
     is at least ``plain_steps·t_step / t_fast``) plus either ``--equal-steps N``, the step
     count measured in a run that went far enough (e.g. the GPU run: same fp32 problem, same
     frames, same seed), or a rough power-law extrapolation of the measured curve (it can be
     far off from a few steps: 168 extrapolated vs 37 measured on the GPU for the defaults);
3. **photoreal**: the weight-free segmentation-aware wavelet transfer (median of 3);
4. **wct2 forward**: the WCT2 wavelet autoencoder with random weights (encode content + style,
   WCT at the bottleneck and every skip, decode).

Frames: synthetic driving-like frames (so CPU and GPU runs solve the same problem), or with
``--demo`` the first frame of ``data/dedupe`` and a real *train* frame of ``data/ingest``. VGG16: ``--vgg-weights``
(default ``random``; timings do not depend on the values). The default CPU run takes about
2-3 minutes on 2 cores. Usage::

    python benchmarks/bench_style.py [--device cuda] [--plain-steps 6] [--batch 1] [--amp]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("SIM2REAL_NO_PROGRESS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from sim2real.style import nst, photoreal, wct2  # noqa: E402
from sim2real.style.weights import load_vgg16_features  # noqa: E402

W, H = 1242, 375


def synthetic_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(content, style, content labels, style labels): blocky sim-like vs blurred, noisy, tinted real-like."""
    rng = np.random.default_rng(0)
    lab = np.zeros((H, W), np.uint8)
    lab[:130] = 1
    lab[130:190] = 3
    lab[190:] = 0
    for x0 in (200, 600, 950):
        lab[170:260, x0:x0 + 160] = 4
    pal_c = {0: (100, 60, 100), 1: (90, 200, 255), 3: (140, 140, 140), 4: (255, 127, 80)}
    pal_s = {0: (70, 72, 68), 1: (205, 212, 220), 3: (120, 110, 96), 4: (60, 60, 70)}
    c = np.zeros((H, W, 3))
    s = np.zeros((H, W, 3))
    for k in pal_c:
        c[lab == k] = pal_c[k]
        s[lab == k] = pal_s[k]
    blocks = rng.integers(-30, 30, (H // 6 + 1, W // 6 + 1, 1))
    c += cv2.resize(blocks.astype(np.float32), (W // 6 * 6 + 6, H // 6 * 6 + 6), interpolation=cv2.INTER_NEAREST)[:H, :W, None]
    s = cv2.GaussianBlur(s, (0, 0), 1.2) + rng.normal(0, 6, s.shape)
    return (np.clip(c, 0, 255).astype(np.uint8), np.clip(s, 0, 255).astype(np.uint8), lab, lab.copy())


def demo_pair():
    """First dedupe frame and the first real train frame with a semantic map (or None)."""
    import pandas as pd
    from sim2real.formats.images import read_gray_any, read_rgb
    from sim2real.formats.vkitti2 import read_class_seg
    fr, rf = ROOT / "data/dedupe/frames.csv", ROOT / "data/ingest/real_frames.csv"
    if not (fr.is_file() and rf.is_file()):
        return None
    f = pd.read_csv(fr, keep_default_na=False).iloc[0]
    r = pd.read_csv(rf, keep_default_na=False, dtype={"image_id": str})
    r = r[(r["split"] == "train") & (r["semantic"] != "")]
    if r.empty:
        return None
    r = r.iloc[0]
    os.chdir(ROOT)
    c = read_rgb(f["image"])
    s = cv2.resize(read_rgb(r["image"]), (c.shape[1], c.shape[0]), interpolation=cv2.INTER_AREA)
    cl = photoreal.coarse_from_vkitti2(read_class_seg(f["class_seg"]))
    sl = cv2.resize(photoreal.coarse_from_cityscapes(read_gray_any(r["semantic"])), (c.shape[1], c.shape[0]),
                    interpolation=cv2.INTER_NEAREST)
    return c, s, cl, sl


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def steps_to_reach(history: list[float], target: float) -> int | None:
    """First step count after which the loss is <= target (history[i] = loss before step i)."""
    for i, v in enumerate(history):
        if v <= target:
            return i
    return None


def extrapolate_steps(history: list[float], target: float) -> float:
    """Power-law fit log L = a + b log t on the second half of the curve, solved for L = target."""
    t = np.arange(1, len(history) + 1, dtype=np.float64)
    h = np.asarray(history, dtype=np.float64)
    half = len(h) // 2
    b, a = np.polyfit(np.log(t[half:]), np.log(h[half:]), 1)
    if b >= 0:
        return math.inf
    return float(math.exp((math.log(target) - a) / b))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--scales", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    ap.add_argument("--steps", type=int, nargs="+", default=[60, 20, 4])
    ap.add_argument("--plain-steps", type=int, default=None, help="default 6 on cpu, 1500 on cuda")
    ap.add_argument("--batch", type=int, default=1, help="frames per fast-path graph (time is per frame)")
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast in the fast path (CUDA)")
    ap.add_argument("--vgg-weights", default="random")
    ap.add_argument("--skip-wct2", action="store_true")
    ap.add_argument("--demo", action="store_true", help="use the demo world's frames (default: synthetic, "
                    "so CPU and GPU runs optimise the same problem)")
    ap.add_argument("--equal-steps", type=int, default=None,
                    help="plain steps to the fast path's loss measured in another run (e.g. the GPU run: "
                         "the fp32 optimisation is the same); used when not reached within --plain-steps")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args(argv)
    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    plain_steps = args.plain_steps or (1500 if dev == "cuda" else 6)
    torch.manual_seed(0)

    pair = demo_pair() if args.demo else None
    source = "demo world (data/dedupe + data/ingest train)" if pair else "synthetic frames"
    c, s, cl, sl = pair or synthetic_pair()
    net, wsrc = load_vgg16_features(args.vgg_weights, seed=0)
    cfg = nst.NSTConfig(scales=tuple(args.scales), steps=tuple(args.steps), plateau_patience=0, amp=args.amp)
    plain_cfg = nst.NSTConfig(scales=(1.0,), steps=(plain_steps,), plateau_patience=0)
    feats = nst.build_features(net, cfg, dev)
    ct = nst.to_tensor([c], dev)
    st = nst.to_tensor([s], dev)
    info = {"device": torch.cuda.get_device_name(0) if dev == "cuda" else (platform.processor() or platform.machine()),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "frames": source, "vgg_weights": wsrc}

    # warm-up (allocators, oneDNN/cuDNN autotune)
    nst.gatys(feats, ct[..., :64, :64], st[..., :64, :64], plain_cfg, steps=2)
    sync(dev)

    # 1. fast path
    cb, sb = ct.repeat(args.batch, 1, 1, 1), st.repeat(args.batch, 1, 1, 1)
    sync(dev)
    t0 = time.perf_counter()
    out, res = nst.fast_nst(feats, cb, sb, cfg)
    sync(dev)
    t_fast = (time.perf_counter() - t0) / args.batch
    # the fast result's loss under the full-resolution objective (fp32, the plain run's objective)
    obj = nst.StyleObjective(feats, ct, st, plain_cfg)
    with torch.no_grad():
        _, _, tot = obj.losses(out[:1])
    l_fast = float(tot.sum())

    # 2. plain Gatys at full resolution
    sync(dev)
    t0 = time.perf_counter()
    _, pres = nst.optimise(obj, ct, plain_steps, plain_cfg)
    sync(dev)
    t_plain_total = time.perf_counter() - t0
    t_step = t_plain_total / plain_steps
    hist = pres.history  # loss before each step, then the final loss
    reached = steps_to_reach(hist, l_fast)
    if reached is not None:
        n_equal, how = float(reached), "measured"
    elif args.equal_steps:
        n_equal, how = float(args.equal_steps), "steps from --equal-steps"
    else:
        n_equal, how = extrapolate_steps(hist[1:], l_fast), "extrapolated"
    lower = plain_steps * t_step / t_fast if reached is None else None

    # 3. photoreal
    pcfg = photoreal.PhotorealConfig()
    times = []
    for i in range(3):
        t0 = time.perf_counter()
        photoreal.photoreal_transfer(c, s, cl, sl, pcfg, rng=np.random.default_rng(i))
        times.append(time.perf_counter() - t0)
    t_photo = statistics.median(times)

    # 4. wct2 forward, random weights
    t_wct2 = None
    if not args.skip_wct2:
        model = wct2.random_wct2(0).to(dev)
        model.stylize(ct[..., :64, :64], st[..., :64, :64])
        sync(dev)
        t0 = time.perf_counter()
        model.stylize(ct, st)
        sync(dev)
        t_wct2 = time.perf_counter() - t0

    t_plain_equal = n_equal * t_step
    rows = [
        ("nst plain Gatys (full res, to equal loss)", t_plain_equal, f"{n_equal:.0f} steps x {t_step:.3f} s ({how})"),
        ("nst fast (coarse-to-fine)", t_fast, f"scales {args.scales} steps {args.steps} batch {args.batch}"
                                               f"{' amp' if args.amp else ''}"),
        ("photoreal (segmentation-aware wavelet WCT)", t_photo, "median of 3"),
    ]
    if t_wct2 is not None:
        rows.append(("wct2 forward (random weights)", t_wct2, "encode x2 + WCT + decode"))
    result = {**info, "plain_seconds_per_step": t_step, "plain_steps_measured": plain_steps,
              "plain_steps_to_equal_loss": n_equal, "equal_loss_steps_how": how, "fast_final_loss": l_fast,
              "plain_loss_after_measured_steps": hist[-1], "fast_seconds": t_fast, "plain_seconds_equal_loss": t_plain_equal,
              "photoreal_seconds": t_photo, "wct2_forward_seconds": t_wct2,
              "speedup_fast_vs_plain": t_plain_equal / t_fast,
              "speedup_fast_vs_plain_lower_bound": lower,
              "speedup_photoreal_vs_fast_nst": t_fast / t_photo}
    print(f"# bench_style: 1242x375, device {info['device']} ({dev}), torch {info['torch']}, "
          f"{info['threads']} threads, {source}, VGG16 {wsrc}")
    print("| method | s / frame | notes |")
    print("|---|---:|---|")
    for name, sec, note in rows:
        print(f"| {name} | {sec:.3f} | {note} |")
    print(f"fast NST loss {l_fast:.4g}; plain after {plain_steps} steps {hist[-1]:.4g}")
    print(f"speedup fast vs plain at equal loss: {result['speedup_fast_vs_plain']:.1f}x ({how})"
          + (f"; measured lower bound {lower:.2f}x" if lower is not None else ""))
    print(f"speedup photoreal vs fast nst: {result['speedup_photoreal_vs_fast_nst']:.0f}x; "
          f"vs plain nst: {t_plain_equal / t_photo:.0f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float) + "\n")
    return result


if __name__ == "__main__":
    main()
