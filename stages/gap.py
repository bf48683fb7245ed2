"""Stage `gap@<variant>`: domain-gap metrics between a variant's training images and real KITTI val.

Reads the variant dataset's ``frames.csv`` (``image`` + YOLO ``label`` columns), the real
manifest (``real_frames.csv`` rows with ``split == val``, boxes from ``real_boxes.csv``), and
writes ``reports/gap/<variant>.json`` plus the curve CSVs ``<curves>/blur_profile.csv`` and
``<curves>/spectrum.csv``; headline numbers go to W&B and DVCLive (``<live>/metrics.json``).
Params: gap, seed, classes, compute.processes.
"""
from __future__ import annotations

import argparse

from sim2real.cli import entrypoint
from sim2real.metrics.gap_run import HEADLINE, run
from sim2real.params import load_params
from sim2real.safety import data_roots


def cli(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", required=True, help="variant name (baseline, depth_blur, ...)")
    ap.add_argument("--frames", required=True, help="the variant's frames.csv (image + label columns)")
    ap.add_argument("--real-frames", required=True, help="data/ingest/real_frames.csv")
    ap.add_argument("--real-boxes", required=True, help="data/ingest/real_boxes.csv")
    ap.add_argument("--out", required=True, help="output JSON (reports/gap/<variant>.json)")
    ap.add_argument("--curves", required=True, help="output folder for blur_profile.csv and spectrum.csv")
    ap.add_argument("--live", default=None, help="DVCLive folder (headline metrics.json)")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = cli(argv)
    p = load_params("gap", "seed", "classes", "compute", "data", "tracking")
    result, seconds = run(args.variant, args.frames, args.real_frames, args.real_boxes, args.out, args.curves,
                          args.live, gap=p.gap, seed=p.seed, classes=p.classes, compute=p.compute, data=p.data,
                          tracking=p.tracking, roots=data_roots(p.data))
    print(f"gap {args.variant}: " + ", ".join(f"{k}={result[k]:.4g}" for k in HEADLINE)
              + f" ({result['feature_extractor']}; {seconds:.1f} s)")


if __name__ == "__main__":
    entrypoint(main)
