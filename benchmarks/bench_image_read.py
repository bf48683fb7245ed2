"""Cost of strict image reading and of what ingest checks per frame, on a generated demo world.

Rows (median ms per file over ``--repeat`` passes, and the ratio to the baseline in the same run):

* ``opencv imread`` — the old reader (``cv2.imread`` + BGR->RGB): the baseline.
* ``read_rgb (strict)`` — :func:`sim2real.formats.images.read_rgb`: end-marker check + the same decode.
* ``PIL load`` — ``Image.open().load()`` (the other strict option; raises on truncated files).
* ``check_complete`` / ``image_size`` — what ingest does per file (no pixel decode).
* ``fingerprint cold`` / ``warm`` — :func:`sim2real.fingerprint.file_fingerprints` without / with the hash cache.

    python benchmarks/bench_image_read.py                    # makes a 2-scene demo world in a temp folder
    python benchmarks/bench_image_read.py --world data/demo  # or reads an existing one
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from sim2real.demo import generate
from sim2real.fingerprint import FingerprintCache, file_fingerprints
from sim2real.formats.images import check_complete, image_size, read_gray_any, read_rgb

cv2.setNumThreads(1)


def opencv_imread(path: str) -> np.ndarray:  # the reader before strict decoding
    return cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def pil_load(path: str) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        return np.asarray(im)


def per_file_ms(fn, files: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for f in files:
            fn(f)
        times.append((time.perf_counter() - t0) * 1000 / len(files))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", help="an existing demo world (holds vkitti2/); default: generate one")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(args.world) if args.world else Path(tmp) / "world"
        if not args.world:
            generate(world, seed=7, scenes=2, frames_per_scene=16, variations=["clone"], real_frames=8, real_seg_every=4)
        vk = world / "vkitti2"
        groups = {m: sorted(str(p) for p in vk.glob(f"vkitti_2.0.3_{m}/**/*.{ext}"))
                  for m, ext in (("rgb", "jpg"), ("depth", "png"), ("classSegmentation", "png"), ("instanceSegmentation", "png"))}
        print(f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"opencv {cv2.__version__}; {len(groups['rgb'])} frames; load average {os.getloadavg()[0]:.1f}")
        rgb = groups["rgb"]
        base = per_file_ms(opencv_imread, rgb, args.repeat)
        print(f"{'reader (JPEG 1242x375)':34s} {'ms/file':>8s} {'x baseline':>10s}")
        for name, fn in (("opencv imread (baseline)", opencv_imread), ("read_rgb (strict)", read_rgb),
                         ("PIL load", pil_load), ("check_complete", check_complete), ("image_size (ingest)", image_size)):
            ms = base if fn is opencv_imread else per_file_ms(fn, rgb, args.repeat)
            print(f"{name:34s} {ms:8.3f} {ms / base:10.2f}")
        every = [f for files in groups.values() for f in files]
        n_frames = len(rgb)
        full = sum(per_file_ms(read_rgb if m in ("rgb", "classSegmentation") else read_gray_any, files, 1) * len(files)
                   for m, files in groups.items()) / n_frames
        header = sum(per_file_ms(check_complete, files, args.repeat) * len(files) for files in groups.values()) / n_frames
        header += per_file_ms(image_size, rgb, args.repeat)
        print(f"\nper frame (4 files): full decode {full:.2f} ms, ingest checks (end markers + RGB header) {header:.3f} ms"
              f" -> full decode is {full / header:.0f}x the ingest checks")
        with tempfile.TemporaryDirectory() as cache_dir:
            cache_path = Path(cache_dir) / "fp.sqlite"
            t0 = time.perf_counter()
            with FingerprintCache(cache_path) as cache:
                file_fingerprints(every, cache)
            cold = (time.perf_counter() - t0) * 1000 / n_frames
            t0 = time.perf_counter()
            with FingerprintCache(cache_path) as cache:
                file_fingerprints(every, cache)
            warm = (time.perf_counter() - t0) * 1000 / n_frames
        print(f"fingerprints per frame (4 files): cold {cold:.3f} ms (hash every byte), warm {warm:.3f} ms "
              f"(stat + cache hit) -> warm is {cold / warm:.0f}x faster")


if __name__ == "__main__":
    main()
