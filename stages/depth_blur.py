"""Stage `depth_blur`: depth- and instance-aware realism on the deduplicated synthetic frames.

Reads ``<dedupe>/frames.csv`` (RGB, depth, instance paths and intrinsics per frame) and
``<dedupe>/boxes_kept.csv``; writes the variant dataset ``<out>/images/<frame_id>.jpg``,
``<out>/labels/<frame_id>.txt`` (YOLO) and ``<out>/frames.csv`` (one row per frame: the input
columns with ``image``/``label`` replaced, every drawn parameter value and the label-honesty
counts), plus the summary ``--report`` JSON. Params: blur, haze, camera, seed, compute.processes;
``--overlay`` lays a params-shaped file's blur/haze/camera keys over them (stage
depth_blur_calibrated: the calibrate stage's fitted values).

Each frame's values are drawn by :func:`sim2real.physics.frame.sample_values` from a generator
seeded by (seed, frame id), so one frame can be re-rendered alone (:func:`render_frame`).
Boxes never move; a box whose mean haze transmission over its instance mask is below
``haze.min_transmission`` is dropped from that frame's labels and counted in the report.
"""
from __future__ import annotations

import argparse

from sim2real.cli import entrypoint
from sim2real.parallel import compute_options
from sim2real.params import layer, load_params, plain
from sim2real.physics.dataset import run
from sim2real.safety import data_roots


def cli(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dedupe", required=True, help="dedupe output folder (frames.csv, boxes_kept.csv)")
    ap.add_argument("--out", required=True, help="variant dataset folder to write")
    ap.add_argument("--report", required=True, help="summary JSON to write")
    ap.add_argument("--overlay", default=None, help="params file (blur/haze/camera) laid over params.yaml's, "
                                                     "e.g. the calibrate stage's fitted values")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = cli(argv)
    p = load_params("blur", "haze", "camera", "seed", "compute", "data")
    params = {"blur": plain(p.blur), "haze": plain(p.haze), "camera": plain(p.camera)}
    if args.overlay:
        params = layer(params, args.overlay, ("blur", "haze", "camera"))
    opts = compute_options(p.compute, p.data, stage="depth_blur")  # workers; Dask scheduler / resume when set
    s = run(args.dedupe, args.out, args.report, params, int(p.seed), roots=data_roots(p.data), **opts)
    print(f"depth_blur: {s['frames']} frames, kept {s['boxes_out']} of {s['boxes_in']} boxes "
          f"({s['boxes_dropped_low_transmission']} dropped, transmission < haze.min_transmission)")


if __name__ == "__main__":
    entrypoint(main)
