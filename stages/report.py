"""Stage `report`: one self-contained ``reports/index.html`` for the reviewer.

Reads, for every variant in params ``variants``: ``<metrics>/<variant>.json`` (score stage: KITTI
AP Car E/M/H, mAP50, intervals, gap closure, recall by distance), ``<gap>/<variant>.json`` and ``<gap>/<variant>/blur_profile.csv`` (gap stage);
``reports/dedupe.json``; the calibrate stage's ``reports/calibration.json`` and curve CSVs
(hidden vs recovered camera on the demo world, statistics before/after, fitted-vs-real curves); ``params.yaml``; and the variant datasets' frames.csv for the image grid.
Everything is required: a missing input is an error naming the file (the stage depends on all of
them in dvc.yaml). The page opens with the study's answer (:mod:`sim2real.report.study`): a sentence
per variant, gap-closure bars, recall vs distance and the far-car line; ``<plots>/recall_by_distance.csv``
(variant, bin, bin_start_m, value, lo, hi, n_gt) is written for ``dvc plots``. Plots are matplotlib PNGs, photos JPEG thumbnails, all embedded as base64
``data:`` URIs, so the page opens offline from anywhere. Params: report, variants (+ params.yaml).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from sim2real.cli import entrypoint
from sim2real.io import atomic_file
from sim2real.params import load_params, plain
from sim2real.report.page import build_report
from sim2real.safety import data_roots
from sim2real.tracking import Tracker


def cli(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", required=True, help="params.yaml (shown in the report; variants, report)")
    ap.add_argument("--metrics", required=True, help="folder of <variant>.json from the evaluate stage")
    ap.add_argument("--gap", required=True, help="folder of <variant>.json and <variant>/blur_profile.csv")
    ap.add_argument("--dedupe", required=True, help="reports/dedupe.json")
    ap.add_argument("--real-frames", required=True, help="data/ingest/real_frames.csv (real frames for the grid)")
    ap.add_argument("--calibration", required=True, help="reports/calibration.json (calibrate stage)")
    ap.add_argument("--calibration-curves", required=True, help="reports/calibration (fitted-vs-real curve CSVs)")
    ap.add_argument("--out", required=True, help="output HTML (reports/index.html)")
    ap.add_argument("--plots", default=None, help="folder for recall_by_distance.csv (reports/plots)")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = cli(argv)
    p = load_params("report", "data", "tracking", path=args.params)
    text, summary, strip, recall = build_report(Path(args.params), Path(args.metrics), Path(args.gap), Path(args.dedupe),
                                                Path(args.real_frames), Path(args.calibration),
                                                Path(args.calibration_curves), roots=data_roots(p.data))
    with atomic_file(args.out) as fh:
        fh.write(text)
    if args.plots:
        with atomic_file(Path(args.plots) / "recall_by_distance.csv") as fh:
            recall.to_csv(fh, index=False, float_format="%.6g")
    # W&B only: the numbers shown are already DVC metrics of the evaluate and gap stages
    with Tracker("report", None, {"report": plain(p.report)}, tracking=p.tracking) as tr:
        tr.summary(summary)
        if strip is not None:
            tr.log_image("image_grid", strip)
    print(f"report: {args.out} ({len(text) / 1e6:.2f} MB, {len(summary)} variants)")


if __name__ == "__main__":
    entrypoint(main)
