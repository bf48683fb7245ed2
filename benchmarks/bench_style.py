"""Benchmark of the style methods on one 1242x375 frame (a script, not a timed test).

Side by side, in one run on one device, seconds per frame for:

1. **nst fast**: the photoreal transfer of the frame as a warm start (``--init photoreal``, its
   time included), then Gatys steps over ``--scales`` / ``--steps`` / ``--lr`` (default: 6 Adam
   steps at full resolution, the params.yaml default; coarse-to-fine e.g. ``--scales 0.25 0.5 1
   --steps 30 10 3``; ending at scale 1 so its final loss is the full-resolution Gatys loss),
   batch ``--batch``, autocast with ``--amp`` (CUDA only);
2. **nst plain**: Gatys at full resolution from the content image, *same objective*, run with
   each optimiser setting of ``--plain`` (default Adam at lr 0.05 and 0.1 and L-BFGS with a
   strong-Wolfe line search) until its loss is at or below the fast path's final loss (or
   ``--plain-max-steps``); the plain time is the *best* of them, measured (the wall-clock time
   of the steps that got there), never extrapolated. When no setting gets there, a measured
   lower bound of the speed-up is printed instead;
3. **photoreal**: the weight-free segmentation-aware wavelet transfer (median of 3), also scored
   with the Gatys objective (how many plain steps its loss is worth);
4. **wct2 forward**: the WCT2 wavelet autoencoder with random weights (encode content + style,
   WCT at the bottleneck and every skip, decode).

The machine load (``os.getloadavg()``) is printed at the start, between the parts and at the end;
on a shared machine compare the ratios of one run, not seconds across runs. ``--frac 0.5`` runs
the same problem on half-size frames (for quick iteration). Frames: synthetic driving-like
frames with class maps (so CPU and GPU runs solve the same problem), or with ``--demo`` the first
frame of ``data/dedupe`` and a real *train* frame of ``data/ingest``. VGG16: ``--vgg-weights``
(default ``random``; timings do not depend on the values). The default CPU run takes about
7 minutes on 2 idle cores (``--plain adam:0.05``: 3 minutes). Usage::

    python benchmarks/bench_style.py [--device cuda] [--frac 0.5] [--plain adam:0.05 lbfgs] [--batch 1] [--amp]
"""
from __future__ import annotations

import argparse
import json
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


def loadavg() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def parse_plain(spec: str) -> tuple[str, float]:
    """``adam:0.05`` -> ("adam", 0.05); ``lbfgs`` -> ("lbfgs", 1.0)."""
    name, _, lr = spec.partition(":")
    if name not in ("adam", "lbfgs"):
        raise SystemExit(f"--plain {spec!r}: use adam:<lr> or lbfgs")
    return name, float(lr or (1.0 if name == "lbfgs" else 0.02))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--frac", type=float, default=1.0, help="frame size as a fraction of 1242x375")
    ap.add_argument("--init", default="photoreal", choices=["photoreal", "content"], help="fast path start image")
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0])
    ap.add_argument("--steps", type=int, nargs="+", default=[5])
    ap.add_argument("--lr", type=float, default=0.015, help="fast path Adam step")
    ap.add_argument("--optimizer", default="adam", choices=["adam", "lbfgs"], help="fast path optimiser")
    ap.add_argument("--plain", nargs="+", default=["adam:0.05", "adam:0.1", "lbfgs"],
                    help="plain Gatys optimiser settings to try (the best one is the reference)")
    ap.add_argument("--plain-max-steps", type=int, default=None, help="default 150 on cpu, 1500 on cuda")
    ap.add_argument("--batch", type=int, default=1, help="frames per fast-path graph (time is per frame)")
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast in the fast path (CUDA)")
    ap.add_argument("--vgg-weights", default="random")
    ap.add_argument("--skip-wct2", action="store_true")
    ap.add_argument("--demo", action="store_true", help="use the demo world's frames (default: synthetic, "
                    "so CPU and GPU runs optimise the same problem)")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args(argv)
    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    max_steps = args.plain_max_steps or (1500 if dev == "cuda" else 150)
    torch.manual_seed(0)
    loads = [loadavg()]
    print(f"# {loads[0]} (start)", flush=True)

    pair = demo_pair() if args.demo else None
    source = "demo world (data/dedupe + data/ingest train)" if pair else "synthetic frames"
    c, s, cl, sl = pair or synthetic_pair()
    if args.frac != 1.0:
        w, h = round(c.shape[1] * args.frac), round(c.shape[0] * args.frac)
        c, s = (cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA) for a in (c, s))
        cl, sl = (cv2.resize(a, (w, h), interpolation=cv2.INTER_NEAREST) for a in (cl, sl))
    h, w = c.shape[:2]
    net, wsrc = load_vgg16_features(args.vgg_weights, seed=0)
    cfg = nst.NSTConfig(scales=tuple(args.scales), steps=tuple(args.steps), lr=args.lr, optimizer=args.optimizer,
                        plateau_patience=0, amp=args.amp, init=args.init)
    ref_cfg = nst.NSTConfig(scales=(1.0,), steps=(1,), plateau_patience=0)  # the objective (layers, weights)
    feats = nst.build_features(net, cfg, dev)
    ct = nst.to_tensor([c], dev)
    st = nst.to_tensor([s], dev)
    info = {"device": torch.cuda.get_device_name(0) if dev == "cuda" else (platform.processor() or platform.machine()),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "frames": source, "vgg_weights": wsrc,
            "size": [w, h]}
    obj = nst.StyleObjective(feats, ct, st, ref_cfg)

    def full_loss(x: torch.Tensor) -> float:
        with torch.no_grad():
            return float(obj.losses(x[:1])[2].sum())

    # warm-up at every shape either path uses (oneDNN/cuDNN build their kernels per shape on first
    # use; a stage styling many frames of one size runs in this steady state)
    warm_cfg = nst.NSTConfig(scales=tuple(sorted(set(args.scales) | {1.0})), steps=(1,) * len(set(args.scales) | {1.0}),
                             plateau_patience=0)
    nst.fast_nst(feats, ct.repeat(args.batch, 1, 1, 1), st.repeat(args.batch, 1, 1, 1), warm_cfg)
    nst.gatys(feats, ct, st, ref_cfg, steps=1)
    sync(dev)

    # 1. fast path: photoreal warm start + coarse-to-fine, per frame of a batch
    pcfg = photoreal.PhotorealConfig()
    sync(dev)
    t0 = time.perf_counter()
    warm = None
    if args.init == "photoreal":
        warm_u8 = [photoreal.photoreal_transfer(c, s, cl, sl, pcfg, rng=np.random.default_rng(0))] * args.batch
        warm = nst.to_tensor(warm_u8, dev)
    cb, sb = ct.repeat(args.batch, 1, 1, 1), st.repeat(args.batch, 1, 1, 1)
    out, res = nst.fast_nst(feats, cb, sb, cfg, init=warm)
    sync(dev)
    t_fast = (time.perf_counter() - t0) / args.batch
    l_fast = full_loss(out)
    l_warm = full_loss(warm) if warm is not None else None
    l_content = full_loss(ct)
    loads.append(loadavg())
    print(f"# fast path done: {t_fast:.2f} s, loss {l_fast:.4g} ({loads[-1]})", flush=True)

    # 2. plain Gatys at full resolution, each optimiser setting, until it reaches the fast loss
    plain = []
    for spec in args.plain:
        opt, lr = parse_plain(spec)
        pcfg_n = nst.NSTConfig(scales=(1.0,), steps=(max_steps,), optimizer=opt, lr=lr, plateau_patience=0)
        sync(dev)
        _, pres = nst.optimise(obj, ct, max_steps, pcfg_n, stop_below=l_fast)
        sync(dev)
        # history[i] = loss of the image after i steps (then the final image's)
        hit = next((i for i, v in enumerate(pres.history) if v <= l_fast), None)
        reached = hit is not None
        n = min(hit if reached else pres.steps, len(pres.elapsed))  # steps that produced that image
        t_reach = pres.elapsed[n - 1] if n else 0.0
        ev = pres.evals_after[n - 1] if n else 0
        t_step = t_reach / n if n else float("nan")
        # the photoreal warm start's loss is worth this many plain steps of this setting
        worth = next((i for i, v in enumerate(pres.history) if l_warm is not None and v <= l_warm), None)
        plain.append(dict(setting=spec, reached=bool(reached), steps=n, evals=ev, seconds=t_reach,
                          seconds_per_step=t_step, loss_at_stop=pres.history[-1],
                          steps_to_photoreal_loss=worth))
        loads.append(loadavg())
        print(f"# plain {spec}: {'reached' if reached else 'NOT reached'} {l_fast:.4g} after {n} steps "
              f"({ev} evals), {t_reach:.1f} s ({loads[-1]})", flush=True)
    done = [p for p in plain if p["reached"]]
    best = min(done, key=lambda p: p["seconds"]) if done else max(plain, key=lambda p: p["seconds"])

    # load-robust cost model: per-pass times at each scale measured interleaved (same moments), then
    # fast = photoreal + sum over scales of (steps x forward+backward + 3 forwards: the two target
    # images and the final loss); plain = its forward+backward passes + 2 target forwards
    sizes = {sc: (max(16, round(h * sc)), max(16, round(w * sc))) for sc in sorted(set(args.scales) | {1.0})}
    objs = {sc: nst.StyleObjective(feats, nst.resize(ct, hw), nst.resize(st, hw), ref_cfg) for sc, hw in sizes.items()}
    t_eval = {sc: [] for sc in sizes}
    t_fwd = {sc: [] for sc in sizes}
    for _ in range(3):
        for sc, hw in sizes.items():
            x = nst.resize(ct, hw).clone().requires_grad_(True)
            sync(dev)
            t0 = time.perf_counter()
            objs[sc].losses(x)[2].sum().backward()
            sync(dev)
            t_eval[sc].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with torch.no_grad():
                objs[sc].losses(x)
            sync(dev)
            t_fwd[sc].append(time.perf_counter() - t0)
    t_eval = {sc: statistics.median(v) for sc, v in t_eval.items()}
    t_fwd = {sc: statistics.median(v) for sc, v in t_fwd.items()}
    if args.optimizer != "adam":
        raise SystemExit("the pass-count model needs --optimizer adam (one pass per step)")
    model_fast = sum(n * t_eval[sc] + 3 * t_fwd[sc] for sc, n in zip(args.scales, args.steps))
    loads.append(loadavg())

    # 3. photoreal
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
    loads.append(loadavg())

    speedup = best["seconds"] / t_fast
    model_fast += t_photo if args.init == "photoreal" else 0.0
    for p in plain:
        p["model_seconds"] = p["evals"] * t_eval[1.0] + 2 * t_fwd[1.0]
    model_best = min((p for p in plain if p["reached"]), key=lambda p: p["model_seconds"], default=None)
    model_speedup = model_best["model_seconds"] / model_fast if model_best else None
    rows = [(f"nst plain Gatys {p['setting']} (full res, to equal loss)", p["seconds"],
             f"{p['steps']} steps / {p['evals']} evals x {p['seconds_per_step']:.3f} s"
             + ("" if p["reached"] else f" (NOT reached: loss {p['loss_at_stop']:.4g})")) for p in plain]
    rows += [
        ("nst fast (" + ("photoreal warm start + " if args.init == "photoreal" else "")
         + ("coarse-to-fine)" if len(args.scales) > 1 else "full-res Adam)"),
         t_fast, f"init {args.init}, scales {args.scales} steps {args.steps} {args.optimizer} lr {args.lr} "
                 f"batch {args.batch}{' amp' if args.amp else ''}, {res.evals} evals"),
        ("photoreal (segmentation-aware wavelet WCT)", t_photo, "median of 3"),
    ]
    if t_wct2 is not None:
        rows.append(("wct2 forward (random weights)", t_wct2, "encode x2 + WCT + decode"))
    result = {**info, "fast_final_loss": l_fast, "content_loss_total": l_content, "photoreal_loss_total": l_warm,
              "fast_seconds": t_fast, "fast_evals": res.evals, "plain": plain, "plain_best": best["setting"],
              "plain_seconds_equal_loss": best["seconds"], "plain_reached": bool(done),
              "photoreal_seconds": t_photo, "wct2_forward_seconds": t_wct2,
              "speedup_fast_vs_plain": speedup if done else None,
              "speedup_fast_vs_plain_lower_bound": None if done else speedup,
              "speedup_photoreal_vs_fast_nst": t_fast / t_photo, "loadavg": loads,
              "pass_seconds": {str(sc): t_eval[sc] for sc in t_eval}, "forward_seconds": {str(sc): t_fwd[sc] for sc in t_fwd},
              "model_fast_seconds": model_fast, "model_speedup_fast_vs_plain": model_speedup,
              "model_plain_best": model_best["setting"] if model_best else None}
    print(f"# bench_style: {w}x{h}, device {info['device']} ({dev}), torch {info['torch']}, "
          f"{info['threads']} threads, {source}, VGG16 {wsrc}")
    print("| method | s / frame | notes |")
    print("|---|---:|---|")
    for name, sec, note in rows:
        print(f"| {name} | {sec:.3f} | {note} |")
    print(f"Gatys loss (full res): content image {l_content:.4g}"
          + (f", photoreal {l_warm:.4g}" if l_warm is not None else "") + f", fast NST {l_fast:.4g}")
    for p in plain:
        if p["steps_to_photoreal_loss"] is not None:
            print(f"photoreal's loss is worth {p['steps_to_photoreal_loss']} plain {p['setting']} steps")
    if done:
        print(f"speedup fast vs best plain ({best['setting']}) at equal loss: {speedup:.1f}x (measured)")
    else:
        print(f"plain did not reach the fast loss within {max_steps} steps: speedup >= {speedup:.1f}x (lower bound)")
    print("forward+backward s by scale: " + ", ".join(f"{sc}: {t:.3f}" for sc, t in t_eval.items())
          + "; forward only: " + ", ".join(f"{sc}: {t:.3f}" for sc, t in t_fwd.items()) + " (interleaved, medians of 3)")
    if model_best:
        print(f"pass-count model (load-robust): fast {model_fast:.2f} s, best plain ({model_best['setting']}, "
              f"{model_best['evals']} passes) {model_best['model_seconds']:.2f} s: {model_speedup:.1f}x")
    print(f"speedup photoreal vs fast nst: {t_fast / t_photo:.0f}x; vs plain nst: {best['seconds'] / t_photo:.0f}x")
    print("# " + " | ".join(loads))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float) + "\n")
    return result


if __name__ == "__main__":
    main()
