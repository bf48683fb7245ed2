"""The ``depth_blur`` stage's work: render every deduplicated synthetic frame with depth- and
instance-aware blur, haze and camera effects, and write the variant dataset and its report.

:func:`run` is the stage (``stages/depth_blur.py`` is its command line); :func:`render_frame`
re-renders one frame alone (its values are drawn from a generator seeded by (seed, frame id)).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from sim2real.errors import DataError
from sim2real.formats.images import read_rgb, write_image
from sim2real.formats.vkitti2 import read_depth_m, read_instance_seg
from sim2real.formats.yolo import boxes_to_yolo, format_labels
from sim2real.io import atomic_outputs
from sim2real.manifest import read_manifest
from sim2real.parallel import SkipLog, map_frames
from sim2real.physics.frame import (DEFAULT_JPEG_QUALITY, VALUE_COLUMNS, check_config, object_transmission, render,
                                    sample_values)

BOX_COLUMNS = ["trackID", "class_id", "left", "top", "right", "bottom"]


def read_frames(dedupe_dir: str | Path, *, roots: Sequence[str | Path]) -> list[dict]:
    """One dict per frame: the frames.csv row plus ``boxes`` ((n, 6) int64 array of
    :data:`BOX_COLUMNS`, boxes_kept.csv file order).

    Memory (issue 9): the frame rows are kept whole (every input column goes to the output
    frames.csv), but boxes_kept.csv is read with its six used columns only and each frame's boxes
    are one small array (views into one sorted array, ~50 B per box instead of ~250 B as Python
    lists). Manifest paths are checked against the data ``roots`` by ``read_manifest``.
    """
    dedupe_dir = Path(dedupe_dir)
    frames_csv, boxes_csv = dedupe_dir / "frames.csv", dedupe_dir / "boxes_kept.csv"
    frames = read_manifest(frames_csv, ["frame_id", "image", "label", "depth", "instance_seg", "width", "height",
                                        "fx", "fy", "cx", "cy"], roots=roots, missing_hint="run the dedupe stage first")
    by_frame: dict[str, np.ndarray] = {}
    if boxes_csv.is_file() and boxes_csv.stat().st_size:
        boxes = read_manifest(boxes_csv, ["frame_id", *BOX_COLUMNS], usecols=["frame_id", *BOX_COLUMNS],
                              roots=roots)
        codes, fids = pd.factorize(boxes["frame_id"], sort=False)
        values = boxes[BOX_COLUMNS].to_numpy(dtype=np.int64)[np.argsort(codes, kind="stable")]
        del boxes
        counts = np.bincount(codes, minlength=len(fids))
        ends = np.cumsum(counts)
        by_frame = {str(f): values[a:b] for f, a, b in zip(fids, ends - counts, ends)}
    items = frames.to_dict("records")
    del frames
    none = np.zeros((0, len(BOX_COLUMNS)), np.int64)
    for it in items:
        it["frame_id"] = str(it["frame_id"])
        it["boxes"] = by_frame.pop(it["frame_id"], none)
    if by_frame:
        raise DataError(boxes_csv, f"boxes for frames not in frames.csv, e.g. {next(iter(by_frame))}")
    return items


def render_frame(item: dict, params: dict, seed: int) -> tuple[np.ndarray, dict, list[int]]:
    """Render one frame: (image uint8, drawn values + stats, indices of the boxes to keep)."""
    fid = item["frame_id"]
    try:
        image = read_rgb(item["image"])
        depth = read_depth_m(item["depth"])
        instance = read_instance_seg(item["instance_seg"]) if item.get("instance_seg") else None
    except DataError as exc:  # keep the file, add the frame
        raise DataError(exc.path, f"frame {fid}: {exc.reason}", line=exc.line) from None
    if image.shape[1] != int(item["width"]) or image.shape[0] != int(item["height"]):
        raise DataError(item["image"], f"frame {fid}: image is {image.shape[1]}x{image.shape[0]}, frames.csv says "
                                       f"{item['width']}x{item['height']}")
    for what, arr, path in (("depth map", depth, item["depth"]), ("instance map", instance, item.get("instance_seg"))):
        if arr is not None and arr.shape[:2] != image.shape[:2]:  # name the file, not only the frame
            raise DataError(path, f"frame {fid}: {what} is {arr.shape[1]}x{arr.shape[0]}, its image "
                                  f"{item['image']} is {image.shape[1]}x{image.shape[0]}")
    intrinsics = tuple(float(item[k]) for k in ("fx", "fy", "cx", "cy"))
    values = sample_values(params, seed, fid)
    out, t, airlight = render(image, depth, instance, intrinsics, params, values, name=fid)
    boxes = np.asarray(item["boxes"], dtype=np.int64).reshape(-1, len(BOX_COLUMNS))
    keep = list(range(len(boxes)))
    min_t = math.nan
    if t is not None and len(boxes):
        trans = object_transmission(t, instance, boxes[:, 0], boxes[:, 2:6])
        min_t = float(trans.min())
        thresh = float((params.get("haze") or {}).get("min_transmission") or 0.0)
        keep = [i for i in range(len(boxes)) if trans[i] >= thresh]
    stats = dict(values)
    a = airlight if airlight is not None else [math.nan] * 3
    stats.update(airlight_r=a[0], airlight_g=a[1], airlight_b=a[2], n_boxes_in=len(boxes),
                 n_dropped_low_transmission=len(boxes) - len(keep), min_object_transmission=min_t)
    return out, stats, keep


def process_frame(item: dict, *, params: dict, seed: int, out_dir: str, final_dir: str) -> dict:
    """Worker: render, write image + labels into ``out_dir`` (the temporary output), return the
    CSV row, whose paths point into ``final_dir`` (the output once renamed into place)."""
    image, stats, keep = render_frame(item, params, seed)
    fid = item["frame_id"]
    quality = stats.get("camera_jpeg_quality")
    write_image(Path(out_dir) / "images" / f"{fid}.jpg", image,
                jpeg_quality=DEFAULT_JPEG_QUALITY if quality is None else int(quality))
    boxes = np.asarray(item["boxes"], dtype=np.int64).reshape(-1, len(BOX_COLUMNS))[keep]
    text = format_labels(boxes[:, 1], boxes_to_yolo(boxes[:, 2], boxes[:, 3], boxes[:, 4], boxes[:, 5],
                                                    int(item["width"]), int(item["height"]))) if len(boxes) else ""
    (Path(out_dir) / "labels" / f"{fid}.txt").write_text(text)
    row = {k: v for k, v in item.items() if k != "boxes"}
    row.update(image=str(Path(final_dir) / "images" / f"{fid}.jpg"), label=str(Path(final_dir) / "labels" / f"{fid}.txt"),
               n_boxes=len(boxes), **stats)
    return row


def summarise(rows: pd.DataFrame, params: dict) -> dict:
    """The report: counts and the mean of every drawn value."""
    means = {}
    for col in (*VALUE_COLUMNS, "airlight_r", "airlight_g", "airlight_b"):
        if col == "noise_seed" or col not in rows:
            continue
        vals = pd.to_numeric(rows[col], errors="coerce").dropna()
        means[f"mean_{col}"] = float(vals.mean()) if len(vals) else None
    blur = params.get("blur") or {}
    return {
        "frames": int(len(rows)),
        "boxes_in": int(rows["n_boxes_in"].sum()) if len(rows) else 0,
        "boxes_out": int(rows["n_boxes"].sum()) if len(rows) else 0,
        "boxes_dropped_low_transmission": int(rows["n_dropped_low_transmission"].sum()) if len(rows) else 0,
        "frames_with_drops": int((rows["n_dropped_low_transmission"] > 0).sum()) if len(rows) else 0,
        "mode": blur.get("mode", "distance"), "targets": blur.get("targets", "all"),
        "haze": bool((params.get("haze") or {}).get("enabled", True)),
        **means,
    }


def run(dedupe_dir: str | Path, out_dir: str | Path, report: str | Path, params: dict, seed: int, workers: int = 1, *,
        roots: Sequence[str | Path], **map_options) -> dict:
    """The stage: every frame of ``dedupe_dir`` -> the variant dataset ``out_dir`` + ``report``.

    ``roots``: the data roots the manifests' paths must stay in (:func:`sim2real.safety.data_roots`).
    ``map_options`` go to :func:`sim2real.parallel.map_frames` (scheduler, batch_size, resume_dir, ...).
    """
    check_config(params)
    items = read_frames(dedupe_dir, roots=roots)
    rows = []
    skips = SkipLog(name="depth_blur")  # data.on_error: skip -> corrupt frames are listed, never silently lost
    with atomic_outputs() as outs:  # every output renamed into place together, after all work
        tmp = outs.dir(out_dir)
        (tmp / "images").mkdir()
        (tmp / "labels").mkdir()
        for row in map_frames(process_frame, items, workers=workers, desc="depth_blur", **map_options,
                              params=params, seed=seed, out_dir=str(tmp), final_dir=str(out_dir)):
            if skips.take(row):
                continue
            rows.append(row)  # metadata only: pixels stay in the workers
        table = pd.DataFrame(rows)
        table.to_csv(tmp / "frames.csv", index=False)
        summary = summarise(table, params)
        summary.update(skips.report(frames_in=len(items), frames_out=len(rows)))
        outs.json(report, summary)
    return summary
