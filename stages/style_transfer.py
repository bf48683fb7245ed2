"""Stage `style_transfer`: give the deduplicated synthetic frames the look of real KITTI frames.

Style images come only from the real *train* split of ``<real>/real_frames.csv`` (the val split
is held out for evaluation and is never read here). Each synthetic frame is paired with one
style image (``style.pairing``: ``random`` — seeded by (seed, frame id) — or ``histogram`` —
the nearest colour histogram), then styled with ``style.method``:

- ``photoreal`` (default): segmentation-aware wavelet colour/detail transfer, no weights;
- ``nst``: Gatys neural style transfer (VGG16 per ``style.vgg_weights``), warm-started from the
  frame's photoreal transfer (``style.nst.init``), optionally coarse-to-fine;
- ``wct2``: the WCT2 wavelet autoencoder with user checkpoints (``style.wct2_checkpoints``).

Writes the variant dataset ``<out>/images/<frame_id>.jpg``, ``<out>/labels/<frame_id>.txt``
(copied unchanged: styling never moves geometry), ``<out>/frames.csv`` (frame_id, image, label,
style_image_id, method, steps, content_loss, style_loss, regions), the ``--report`` JSON and,
with ``--grid``, an image grid content | style | nst | photoreal. Everything in the output
folder and the report is deterministic (same params and inputs ⇒ same bytes, so DVC does not
rerun the stages downstream); wall-clock times go to ``--timing`` (a CSV outside the DVC-cached
output: frame_id, batch, seconds) and to the tracker (also the stage's total).
Tracking (:class:`sim2real.tracking.Tracker`): W&B offline by default, DVCLive in ``--live``;
per batch (step = batch index) ``batch/content_loss``, ``batch/style_loss``, ``batch/steps``,
``batch/frames``, then the grid image and the report as the run summary; ``stage_seconds`` and
``mean_seconds_per_frame`` go to the W&B summary only (``Tracker.run_info``), never to DVCLive.
Params: style, seed, compute.device, compute.processes (``compute.scheduler`` / ``batch_size`` /
``max_in_flight`` / ``resume`` change how the frames are spread, not the bytes).
"""
from __future__ import annotations

import argparse

from sim2real.cli import entrypoint
from sim2real.io import atomic_outputs
from sim2real.parallel import compute_options
from sim2real.params import load_params, plain
from sim2real.safety import data_roots
from sim2real.style.stage import run
from sim2real.tracking import Tracker


def cli(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dedupe", required=True, help="dedupe output folder (frames.csv with image, label, class_seg)")
    ap.add_argument("--real", required=True, help="ingest output folder (real_frames.csv)")
    ap.add_argument("--out", required=True, help="variant dataset folder to write")
    ap.add_argument("--report", required=True, help="summary JSON to write")
    ap.add_argument("--grid", default=None, help="optional JPEG grid: content | style | nst | photoreal")
    ap.add_argument("--timing", default=None, help="optional CSV of wall-clock seconds per frame (not deterministic: "
                    "keep it out of DVC-cached outputs)")
    ap.add_argument("--live", default=None, help="DVCLive folder (metrics.json + per-batch curves); W&B logs offline "
                    "per WANDB_MODE either way")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = cli(argv)
    p = load_params("style", "seed", "compute", "data", "tracking")
    opts = compute_options(p.compute, stage="style_transfer")  # workers; Dask scheduler / resume when set
    style_cfg = plain(p.style)
    config = {"style": style_cfg, "seed": int(p.seed), "device": str(p.compute.device)}
    with atomic_outputs() as outs, \
            Tracker("style_transfer", style_cfg["method"], config=config, dvclive_dir=args.live, tracking=p.tracking,
                    outputs=outs) as tracker:
        s = run(args.dedupe, args.real, args.out, args.report, style_cfg, int(p.seed), str(p.compute.device),
                grid=args.grid, roots=data_roots(p.data), timing=args.timing, tracker=tracker, outputs=outs, **opts)
    note = " (VGG16 weights: random)" if s["vgg_weights"] == "random" else ""
    print(f"style_transfer: {s['frames']} frames with {s['method']}, {s['style_images_used']} style images "
          f"from {s['style_pool_train_frames']} real train frames{note}")


if __name__ == "__main__":
    entrypoint(main)
