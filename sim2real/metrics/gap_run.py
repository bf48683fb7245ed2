"""The ``gap@<variant>`` stage's work: domain-gap metrics between a variant's training images and
real KITTI val (per-image statistics in workers, then :func:`sim2real.metrics.gap.compare_domains`).

:func:`run` is the stage (``stages/gap.py`` is its command line; its docstring lists the inputs,
outputs and params).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sim2real.errors import DataError
from sim2real.formats.images import read_rgb
from sim2real.formats.yolo import read_labels, yolo_to_boxes
from sim2real.io import atomic_outputs
from sim2real.metrics.gap import GapSettings, ImageStats, compare_domains, image_stats
from sim2real.metrics.plots import plot_blur_profile
from sim2real.manifest import read_manifest, resolve_manifest_path
from sim2real.parallel import SkipLog, compute_options, map_frames
from sim2real.tracking import Tracker

HEADLINE = ("blur_profile_distance", "kid", "pad", "colour_w1_lab", "spectrum_slope_abs_diff", "noise_sigma_abs_diff")


def evenly_spaced(df: pd.DataFrame, key: str, n_max: int | None) -> pd.DataFrame:
    """Rows sorted by ``key``, thinned to at most ``n_max`` evenly spaced ones (deterministic)."""
    df = df.sort_values(key, kind="stable").reset_index(drop=True)
    if n_max and len(df) > n_max:
        df = df.iloc[np.unique(np.linspace(0, len(df) - 1, int(n_max)).round().astype(int))].reset_index(drop=True)
    return df


def sim_items(frames_csv: str | Path, classes: list[str], max_images: int | None, *,
              roots: Sequence[str | Path]) -> list[dict]:
    """Work items of a variant dataset: frame id, image path, YOLO label path (boxes read in the worker)."""
    df = read_manifest(frames_csv, ["frame_id", "image", "label"], roots=roots)
    if df.empty:
        raise DataError(frames_csv, "no frames")
    df = evenly_spaced(df, "frame_id", max_images)
    base = Path(frames_csv).parent
    return [{"frame_id": r.frame_id, "image": str(resolve_manifest_path(r.image, base)),
             "label": str(resolve_manifest_path(r.label, base)),
             "n_classes": len(classes)} for r in df.itertuples()]


def real_items(real_frames_csv: str | Path, real_boxes_csv: str | Path, classes: list[str],
               max_images: int | None, *, roots: Sequence[str | Path]) -> list[dict]:
    """Work items of the real val split with their boxes of the output classes (xyxy pixels)."""
    frames = read_manifest(real_frames_csv, ["image_id", "split", "image"], roots=roots)
    frames = frames[frames["split"] == "val"]
    if frames.empty:
        raise DataError(real_frames_csv, "no real frames with split == val")
    frames = evenly_spaced(frames, "image_id", max_images)
    boxes = read_manifest(real_boxes_csv, ["image_id", "type", "left", "top", "right", "bottom"], roots=roots)
    boxes = boxes[boxes["type"].isin(classes)]
    by_id = {k: g[["left", "top", "right", "bottom"]].to_numpy(np.float64) for k, g in boxes.groupby("image_id")}
    base = Path(real_frames_csv).parent
    return [{"frame_id": r.image_id, "image": str(resolve_manifest_path(r.image, base)), "boxes": by_id.get(r.image_id, np.zeros((0, 4)))}
            for r in frames.itertuples()]


def stats_one(item: dict, settings: GapSettings) -> ImageStats:
    """Per-image statistics (top-level, picklable: runs in worker processes)."""
    rgb = read_rgb(item["image"])
    if "boxes" in item:
        boxes = item["boxes"]
    else:
        lab = read_labels(item["label"])
        bad = (lab["cls"] < 0) | (lab["cls"] >= item["n_classes"])
        if bad.any():
            raise DataError(item["label"], f"class id {int(lab['cls'][bad].iloc[0])} outside 0..{item['n_classes'] - 1}")
        boxes = yolo_to_boxes(lab[["cx", "cy", "w", "h"]].to_numpy(), rgb.shape[1], rgb.shape[0]) if len(lab) \
            else np.zeros((0, 4))
    return image_stats(rgb, boxes, image_id=item["frame_id"], denoise_sigma_px=settings.denoise_sigma_px,
                       min_box_px=settings.min_box_px, lab_bins=settings.lab_bins,
                       spectrum_bins=settings.spectrum_bins, thumb_hw=settings.thumb_hw)


def sample_pair(sim: ImageStats, real: ImageStats) -> np.ndarray:
    """Side-by-side thumbnails (sim | real) for the tracker."""
    gap = np.full((sim.thumb.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([sim.thumb, gap, real.thumb], axis=1)


def run(variant: str, frames_csv: str | Path, real_frames_csv: str | Path, real_boxes_csv: str | Path,
        out: str | Path, curves_dir: str | Path, live: str | Path | None, *, gap, seed, classes, compute,
        data, tracking: Any, roots: Sequence[str | Path]) -> tuple[dict, float]:
    """The stage: gap metrics of ``variant`` -> the JSON ``out``, the curve CSVs in ``curves_dir``,
    the tracker (W&B; DVCLive in ``live``). ``gap`` / ``seed`` / ``classes`` / ``compute`` /
    ``data`` / ``tracking``: the params (as :func:`sim2real.params.load_params` returns them);
    ``roots``: the data roots the manifests' paths must lie in (:func:`sim2real.safety.data_roots`).
    Returns (the result dict, seconds since the per-image statistics started).
    """
    settings = GapSettings.from_params(gap, seed)
    classes = list(classes)
    max_images = gap.max_images
    sim_work = sim_items(frames_csv, classes, max_images, roots=roots)
    real_work = real_items(real_frames_csv, real_boxes_csv, classes, max_images, roots=roots)
    # ~50 ms a frame: worker start-up only pays off from a few dozen frames per worker
    workers = max(1, min(int(compute.processes), (len(sim_work) + len(real_work)) // 64))
    t0 = time.perf_counter()
    opts = {k: v for k, v in compute_options(compute, data).items()
            if k in ("scheduler", "batch_size", "max_in_flight", "on_error", "max_skip_fraction")}
    # data.on_error: skip -> listed in the JSON, never lost
    sim_skips, real_skips = SkipLog(name=f"gap {variant} sim"), SkipLog(name="gap real")
    sims = [r for r in map_frames(stats_one, sim_work, workers=workers, desc=f"gap {variant} sim",
                                  settings=settings, **opts) if not sim_skips.take(r)]
    reals = [r for r in map_frames(stats_one, real_work, workers=workers, desc="gap real", settings=settings, **opts)
             if not real_skips.take(r)]
    import torch
    # small demo-sized sets: extra intra-op threads only spin (about 2 s of CPU on 40 images)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), (len(sims) + len(reals)) // 256)))
    try:
        result, curves = compare_domains(sims, reals, settings)
    except ValueError as exc:
        raise DataError(frames_csv, f"gap metrics for variant '{variant}': {exc}") from None
    result["variant"] = variant
    result["sim_frames"] = sim_skips.report(frames_in=len(sim_work), frames_out=len(sims))
    result["real_frames"] = real_skips.report(frames_in=len(real_work), frames_out=len(reals))
    result["directions"] = {k: "lower is better" for k in HEADLINE}
    config = {"gap": dict(gap), "seed": seed, "classes": classes}
    with atomic_outputs() as outs:  # curves, JSON and DVCLive folder renamed into place together, last
        tmp = outs.dir(curves_dir)
        curves["blur_profile"].to_csv(tmp / "blur_profile.csv", index=False, float_format="%.6g")
        curves["spectrum"].to_csv(tmp / "spectrum.csv", index=False, float_format="%.6g")
        outs.json(out, result)
        with Tracker("gap", variant, config, dvclive_dir=live, tracking=tracking, outputs=outs) as tr:
            tr.summary({k: result[k] for k in HEADLINE})
            tr.log_image("sample_sim_vs_real", sample_pair(sims[0], reals[0]))
            tr.log_image("blur_profile", plot_blur_profile(curves["blur_profile"], variant))
    return result, time.perf_counter() - t0
