"""Benchmark of the depth_blur stage on 1242x375 frames (a script, not a timed test).

Prints, in one run and on the same machine: (a) the I/O floor (decode the RGB JPEG and the
16-bit depth PNG, encode the output JPEG, no processing); (b) the stage's full per-frame path
(:func:`sim2real.physics.dataset.process_frame`: read RGB + depth + instance mask, draw values, render,
write JPEG + labels) with the default params, and with distance blur + haze only; (c) a naive
per-pixel variable-kernel blur on a crop, scaled to a frame; (d) one OpenCV GaussianBlur at the
largest sigma. Then the stage's ``run`` with 1 vs 2 worker processes, and its peak RSS (a fresh
process each) at ``--rss-frames`` (default 100 and 1000) frames. The last line is
``ratio_vs_io_floor: <x>`` = stage throughput / I/O-floor throughput (default params).

Frames: ``--dedupe DIR`` (default ``data/dedupe`` when present, e.g. after ``make repro``), else
synthetic frames written to a temporary folder. Usage::

    python benchmarks/bench_depth_blur.py [--frames 24] [--rss-frames 100 1000] [--dedupe data/dedupe]
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SIM2REAL_NO_PROGRESS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from sim2real.formats.images import read_rgb, write_gray, write_image  # noqa: E402
from sim2real.formats.vkitti2 import read_depth_m, write_depth  # noqa: E402
from sim2real.physics.blur import distance_sigma_px  # noqa: E402
from sim2real.physics.dataset import process_frame, read_frames, run  # noqa: E402
from sim2real.safety import data_roots  # noqa: E402

W, H = 1242, 375


def synthetic_dedupe(root: Path, n: int = 8) -> Path:
    """A dedupe-like folder of n blocky, vKITTI-looking frames: sky, ground plane, buildings, cars."""
    rng = np.random.default_rng(0)
    rows, boxes = [], []
    v = np.arange(H, dtype=np.float32)[:, None]
    horizon, fx = 170.0, 725.0
    for i in range(n):
        fid = f"Synth_clone_c0_{i:05d}"
        blocks = rng.integers(40, 220, (H // 6 + 1, W // 6 + 1, 3)).astype(np.uint8)
        img = cv2.resize(blocks, (W // 6 * 6 + 6, H // 6 * 6 + 6), interpolation=cv2.INTER_NEAREST)[:H, :W].copy()
        ground = np.where(v > horizon + 1, fx * 1.65 / np.maximum(v - horizon, 1e-3), np.inf)
        depth = np.broadcast_to(ground, (H, W)).astype(np.float32).copy()
        depth[depth > 400] = np.inf
        img[np.isinf(depth)] = (120, 170, 230)
        depth[60:172, :300] = 40.0 + 5 * i
        depth[90:172, 900:] = 90.0
        inst = np.zeros((H, W), np.uint8)
        for k, (x, z) in enumerate([(250, 8.0 + i), (620, 25.0), (800, 60.0), (560, 110.0)]):
            s = int(1400 / z)
            y1 = int(horizon + fx * 1.65 / z)
            x1 = min(x + 2 * s, W)
            depth[y1 - s:y1, x:x1] = z
            inst[y1 - s:y1, x:x1] = k + 1
            img[y1 - s:y1, x:x1] = rng.integers(0, 255, 3)
            boxes.append(dict(frame_id=fid, trackID=k, label="Car", class_id=0, left=x, right=x1 - 1,
                              top=y1 - s, bottom=y1 - 1))
        p = {k: root / "src" / f"{k}_{i:05d}.{'jpg' if k == 'rgb' else 'png'}" for k in ("rgb", "depth", "inst")}
        write_image(p["rgb"], img)
        write_depth(p["depth"], depth)
        write_gray(p["inst"], inst)
        rows.append(dict(frame_id=fid, width=W, height=H, rgb=str(p["rgb"]), depth=str(p["depth"]),
                         instance_seg=str(p["inst"]), fx=fx, fy=fx, cx=620.5, cy=187.0, image=str(p["rgb"]),
                         label="", n_boxes=4))
    d = root / "dedupe"
    d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(d / "frames.csv", index=False)
    pd.DataFrame(boxes).to_csv(d / "boxes_kept.csv", index=False)
    return d


def repeat_dedupe(src: Path, dst: Path, n: int) -> Path:
    """A dedupe folder with n frames cycling over src's frames (new ids, same files)."""
    frames, boxes = pd.read_csv(src / "frames.csv", keep_default_na=False), pd.read_csv(src / "boxes_kept.csv")
    idx = np.arange(n) % len(frames)
    rep = frames.iloc[idx].reset_index(drop=True)
    new_ids = [f"{fid}_r{i:05d}" for i, fid in enumerate(rep["frame_id"])]
    b = []
    for new, old in zip(new_ids, rep["frame_id"]):
        b.append(boxes[boxes["frame_id"] == old].assign(frame_id=new))
    rep["frame_id"] = new_ids
    dst.mkdir(parents=True, exist_ok=True)
    rep.to_csv(dst / "frames.csv", index=False)
    pd.concat(b).to_csv(dst / "boxes_kept.csv", index=False)
    return dst


def time_paths(paths: dict, items: list, repeats: int) -> dict:
    """Median and minimum wall time (ms) per call of each path, interleaved frame by frame (after
    one warm-up round) so that every path sees the same machine load; returns two {name: ms}.
    On a shared machine the minimum approximates the uncontended cost."""
    for fn in paths.values():
        fn(items[0])
    times = {name: [] for name in paths}
    for i in range(repeats):
        for name, fn in paths.items():
            t = time.perf_counter()
            fn(items[i % len(items)])
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(v) * 1e3 for name, v in times.items()}, \
        {name: min(v) * 1e3 for name, v in times.items()}


def io_floor(item: dict, out: Path) -> None:
    rgb = read_rgb(item["image"])
    read_depth_m(item["depth"])
    write_image(out / "io.jpg", rgb, jpeg_quality=90)


def naive_variable_blur(img: np.ndarray, sigma_map: np.ndarray) -> np.ndarray:
    """Per-pixel Gaussian of its own sigma, direct summation (the slow reference)."""
    h, w = sigma_map.shape
    out = np.empty(img.shape, np.float32)
    src = img.astype(np.float32)
    for y in range(h):
        for x in range(w):
            s = float(sigma_map[y, x])
            r = int(np.ceil(3 * s))
            if r == 0:
                out[y, x] = src[y, x]
                continue
            y0, y1, x0, x1 = max(y - r, 0), min(y + r + 1, h), max(x - r, 0), min(x + r + 1, w)
            yy, xx = np.mgrid[y0:y1, x0:x1]
            k = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s * s))
            out[y, x] = (src[y0:y1, x0:x1] * k[..., None]).sum((0, 1)) / k.sum()
    return out


def breakdown(items: list, params: dict, seed: int, repeats: int) -> dict:
    """Median ms per frame of each step of the default per-frame path, timed separately."""
    from sim2real.formats.vkitti2 import read_instance_seg
    from sim2real.physics.camera import sensor_noise_u8, vignetting_u8
    from sim2real.physics.frame import sample_values
    from sim2real.physics.haze import koschmieder_u8, resolve_airlight, transmission
    from sim2real.physics.layered import layered_blur
    b, hz, cam = params["blur"], params["haze"], params["camera"]
    steps: dict[str, list[float]] = {}

    def tick(name, fn, *args):
        t = time.perf_counter()
        out = fn(*args)
        steps.setdefault(name, []).append((time.perf_counter() - t) * 1e3)
        return out

    for i in range(repeats):
        it = items[i % len(items)]
        v = sample_values(params, seed, it["frame_id"])
        K = tuple(float(it[k]) for k in ("fx", "fy", "cx", "cy"))
        img = tick("read RGB JPEG", read_rgb, it["image"])
        depth = tick("read depth PNG (16-bit -> float32 m)", read_depth_m, it["depth"])
        tick("read instance PNG (label honesty)", read_instance_seg, it["instance_seg"])
        smap = tick("sigma map", distance_sigma_px, depth, v["blur_sigma_px"], v["blur_near_m"], v["blur_far_m"])
        out = tick("layered blur (occlusion-aware)", lambda: layered_blur(
            img, depth, smap, step_px=float(b["step_px"]), max_layers=int(b["max_layers"])))
        t = tick("transmission exp(-beta * ray length)", transmission, depth, v["haze_visibility_m"], K)
        a = tick("airlight estimate", resolve_airlight, img, depth, hz.get("airlight", "auto"))
        out = tick("Koschmieder blend", koschmieder_u8, out, t, a)
        out = tick("vignetting", vignetting_u8, out, v["camera_vignetting"], (K[2], K[3]))
        rng = np.random.default_rng(v["noise_seed"])
        out = tick("Poisson-Gaussian noise", sensor_noise_u8, out, rng, v["camera_shot_gain"], v["camera_read_sigma"])
        tick("write JPEG", cv2.imencode, ".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(v["camera_jpeg_quality"] or 95)])
    return {k: statistics.median(x) for k, x in steps.items()}


def default_params() -> dict:
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    return {k: p[k] for k in ("blur", "haze", "camera")}, int(p.get("seed", 0))


def bench_roots(*scratch: Path) -> list[Path]:
    """The repository's data roots (params.yaml ``data``) plus the benchmark's scratch folders."""
    return [*data_roots(yaml.safe_load((ROOT / "params.yaml").read_text()).get("data"), base=ROOT), *scratch]


def rss_child(dedupe: str, out: str) -> None:
    params, seed = default_params()
    run(dedupe, out, Path(out).with_suffix(".json"), params, seed, workers=1, roots=bench_roots(Path(dedupe).parent))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def crops_figure(dedupe: Path, aug: Path, out_png: Path, distances=((5, 15), (20, 40), (50, 200))) -> list[str]:
    """Before/after crops of one object per distance band: rows = distances, columns = before | after.

    Objects are the kept boxes of ``dedupe``; their distance is the median depth over their
    instance mask; ``aug`` is the depth_blur output (``data/aug/depth_blur``). Returns captions.
    """
    from sim2real.formats.vkitti2 import read_instance_seg
    frames = pd.read_csv(dedupe / "frames.csv", keep_default_na=False).set_index("frame_id")
    boxes = pd.read_csv(dedupe / "boxes_kept.csv")
    picked, captions = [], []
    for lo, hi in distances:
        best = None
        for fid, g in boxes.groupby("frame_id", sort=False):
            row = frames.loc[fid]
            depth, inst = read_depth_m(row["depth"]), read_instance_seg(row["instance_seg"])
            for b in g.itertuples():
                m = inst == b.trackID + 1
                if m.sum() < 30:
                    continue
                z = float(np.median(depth[m]))
                if lo <= z < hi and (best is None or b.bottom - b.top > best[2].bottom - best[2].top):
                    best = (fid, z, b)
            if best is not None and len(picked) < 3 and fid != best[0]:
                break
        if best is not None:
            picked.append(best)
    tiles = []
    for fid, z, b in picked:
        before = read_rgb(frames.loc[fid]["image"])
        after = read_rgb(aug / "images" / f"{fid}.jpg")
        cx, cy = (b.left + b.right) // 2, (b.top + b.bottom) // 2
        half_w = max(60, (b.right - b.left) // 2 + 20)
        half_h = max(40, (b.bottom - b.top) // 2 + 15)
        x0, y0 = max(cx - half_w, 0), max(cy - half_h, 0)
        x1, y1 = min(cx + half_w, W), min(cy + half_h, H)
        row = []
        for img, tag in ((before, "before"), (after, "after")):
            crop = cv2.resize(img[y0:y1, x0:x1], (320, 200), interpolation=cv2.INTER_NEAREST)
            crop = np.ascontiguousarray(crop)
            cv2.putText(crop, f"{tag}, {z:.0f} m", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
            row.append(crop)
        tiles.append(np.hstack(row))
        captions.append(f"{fid} track {b.trackID} ({b.label}) at {z:.0f} m")
    write_image(out_png, np.vstack(tiles))
    return captions


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dedupe", default=None, help="dedupe folder (default data/dedupe if present, else synthetic)")
    ap.add_argument("--frames", type=int, default=24, help="frames timed per path")
    ap.add_argument("--workers-frames", type=int, default=128, help="frames for the workers 1 vs 2 run")
    ap.add_argument("--rss-frames", type=int, nargs="*", default=[100, 1000], help="frame counts for peak RSS")
    ap.add_argument("--crop", type=int, default=40, help="side of the naive blur's crop (px)")
    ap.add_argument("--crops", metavar="PNG", help="only write the README's before/after crops figure "
                    "from --dedupe and data/aug/depth_blur (after `dvc repro depth_blur`)")
    ap.add_argument("--_rss-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._rss_child:
        return rss_child(*args._rss_child)
    if args.crops:
        os.chdir(ROOT)
        for line in crops_figure(Path(args.dedupe or "data/dedupe"), Path("data/aug/depth_blur"), Path(args.crops)):
            print(line)
        return None
    cv2.setNumThreads(1)
    params, seed = default_params()
    tmp = Path(tempfile.mkdtemp(prefix="bench_depth_blur_"))
    try:
        dedupe = Path(args.dedupe) if args.dedupe else ROOT / "data" / "dedupe"
        os.chdir(ROOT)  # manifests hold paths relative to the repository root
        if not (dedupe / "frames.csv").is_file():
            dedupe = synthetic_dedupe(tmp / "synthetic")
            source = "synthetic (8 frames)"
        else:
            source = str(dedupe)
        roots = bench_roots(tmp)
        items = read_frames(dedupe, roots=roots)
        items = [it for it in items if int(it["width"]) == W and int(it["height"]) == H] or items
        out = tmp / "out"
        for sub in ("images", "labels"):
            (out / sub).mkdir(parents=True)
        blur_haze = {"blur": params["blur"], "haze": params["haze"],
                     "camera": {k: None for k in params["camera"]}}
        img0 = read_rgb(items[0]["image"])
        smax = float(np.max(np.atleast_1d(params["blur"]["sigma"])))
        ms, best = time_paths({
            "a": lambda it: io_floor(it, out),
            "b": lambda it: process_frame(it, params=params, seed=seed, out_dir=str(out), final_dir=str(out)),
            "b2": lambda it: process_frame(it, params=blur_haze, seed=seed, out_dir=str(out), final_dir=str(out)),
            "d": lambda _: cv2.GaussianBlur(img0, (0, 0), smax),
        }, items, args.frames)
        a, b, b2, d = ms["a"], ms["b"], ms["b2"], ms["d"]
        img, depth = read_rgb(items[0]["image"]), read_depth_m(items[0]["depth"])
        smap = distance_sigma_px(depth, smax, float(np.min(params["blur"]["near_m"])), float(np.max(params["blur"]["far_m"])))
        c_side = args.crop
        ys, xs = np.nonzero(smap > 0.75 * smax)  # a crop where the blur is strong
        y0 = int(min(max(ys.min(), 0), H - c_side)) if len(ys) else 0
        t = time.perf_counter()
        naive_variable_blur(img[y0:y0 + c_side, 600:600 + c_side], smap[y0:y0 + c_side, 600:600 + c_side])
        c = (time.perf_counter() - t) * 1e3 * (H * W) / (c_side * c_side)
        parts = breakdown(items, params, seed, args.frames)

        wk = repeat_dedupe(dedupe, tmp / "wk", args.workers_frames)
        wall = {}
        for n in (1, 2):
            t = time.perf_counter()
            run(wk, tmp / f"w{n}", tmp / f"w{n}.json", params, seed, workers=n, roots=roots)
            wall[n] = time.perf_counter() - t
        rss = {}
        for n in args.rss_frames:
            src = repeat_dedupe(dedupe, tmp / f"rss{n}", n)
            proc = subprocess.run([sys.executable, __file__, "--_rss-child", str(src), str(tmp / f"rss_out{n}")],
                                  capture_output=True, text=True, cwd=ROOT, check=True)
            rss[n] = int(proc.stdout.strip().splitlines()[-1]) / 1024
            shutil.rmtree(tmp / f"rss_out{n}", ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    fps = lambda ms: 1000.0 / ms  # noqa: E731
    print(f"# depth_blur benchmark — {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; python {platform.python_version()}, numpy {np.__version__}, "
          f"opencv {cv2.__version__}; frames: {source}, {W}x{H}; medians over {args.frames} frames, paths interleaved")
    print(f"# params: blur.sigma={params['blur']['sigma']} near/far={params['blur']['near_m']}/{params['blur']['far_m']} m, "
          f"haze.visibility_m={params['haze']['visibility_m']}, camera noise/vignetting/JPEG as params.yaml")
    print(f"{'path':<58} {'ms/frame':>9} {'frames/s':>9} {'vs (a)':>7} {'min ms':>8} {'vs (a)':>7}")
    rows = [("(a) I/O floor: decode JPEG + depth PNG, encode JPEG", a, best["a"]),
            ("(b) stage per-frame path, default params", b, best["b"]),
            ("(b') stage per-frame path, distance blur + haze only", b2, best["b2"]),
            (f"(c) naive per-pixel variable blur ({c_side}x{c_side} crop, scaled)", c, c),
            (f"(d) one cv2.GaussianBlur at sigma={smax:g} px", d, best["d"])]
    for name, ms, lo in rows:
        print(f"{name:<58} {ms:>9.2f} {fps(ms):>9.1f} {a / ms:>7.2f} {lo:>8.2f} {best['a'] / lo:>7.2f}")
    print("breakdown of (b), each step timed alone (median ms/frame):")
    for name, ms in parts.items():
        print(f"  {name:<56} {ms:>9.2f}")
    print(f"stage vs naive (c)/(b): {c / b:.0f}x faster")
    print(f"workers 1 vs 2 ({args.workers_frames} frames, run()): {wall[1]:.2f} s vs {wall[2]:.2f} s, "
          f"speed-up {wall[1] / wall[2]:.2f}x")
    print("peak RSS (fresh process, workers=1): " + ", ".join(f"{n} frames {r:.0f} MiB" for n, r in rss.items()))
    print(f"ratio_vs_io_floor: {a / b:.2f}")  # medians, default params


if __name__ == "__main__":
    main()
