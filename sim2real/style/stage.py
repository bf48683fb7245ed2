"""The ``style_transfer`` stage's work: pair synthetic frames with real KITTI train style images,
style them (photoreal / nst / wct2), write the variant dataset, the report, the grid and the timing CSV.

:func:`run` is the stage (``stages/style_transfer.py`` is its command line); see that file's
docstring for the outputs and the params it reads.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pandas as pd

from sim2real.errors import ConfigError, DataError
from sim2real.formats.images import read_gray_any, read_rgb, write_image
from sim2real.formats.vkitti2 import read_class_seg
from sim2real.io import atomic_outputs
from sim2real.manifest import read_manifest
from sim2real.params import build
from sim2real.parallel import check_device, is_distributed, map_frames, worker_cache, worker_cache_info
from sim2real.rng import frame_rng

METHODS = ("photoreal", "nst", "wct2")
CSV_COLUMNS = ["frame_id", "image", "label", "style_image_id", "method", "steps", "content_loss", "style_loss",
               "regions"]
TIMING_COLUMNS = ["frame_id", "batch", "seconds"]
HIST_BINS = 8  # per RGB channel for histogram pairing
# networks are built once per process (a local worker process or a Dask worker) and reused for every
# batch it runs: sim2real.parallel.worker_cache, kinds "style.<network>"; model_loads counts the builds


# ---------------------------------------------------------------------------- inputs
def read_content_frames(dedupe_dir: str | Path, *, roots: Sequence[str | Path]) -> list[dict]:
    """Rows of ``<dedupe>/frames.csv`` (frame_id, image, label, class_seg when present), paths inside ``roots``."""
    df = read_manifest(Path(dedupe_dir) / "frames.csv", ["frame_id", "image", "label"], roots=roots,
                       missing_hint="run the dedupe stage first")
    if "class_seg" not in df.columns:
        df["class_seg"] = ""
    return [dict(frame_id=str(r.frame_id), image=str(r.image), label=str(r.label), class_seg=str(r.class_seg))
            for r in df.itertuples()]


def read_style_pool(real_dir: str | Path, semantic_only: bool = False, *, roots: Sequence[str | Path]) -> list[dict]:
    """Real KITTI **train** rows of ``<real>/real_frames.csv``: image_id, image, semantic ('' if none).

    Val rows are dropped here, before anything reads their pixels; paths must lie inside ``roots``.
    """
    path = Path(real_dir) / "real_frames.csv"
    df = read_manifest(path, ["image_id", "split", "image"], roots=roots, missing_hint="run the ingest stage first")
    bad = ~df["split"].isin(["train", "val"])
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        raise DataError(path, f"split must be train or val, got {df['split'].iloc[i]!r}", line=i + 2)
    if "semantic" not in df.columns:
        df["semantic"] = ""
    train = df[df["split"] == "train"]
    if semantic_only:
        train = train[train["semantic"].astype(str) != ""]
    if train.empty:
        raise DataError(path, "no real train frames" + (" with a semantic map" if semantic_only else "") +
                        " to use as style images")
    return [dict(image_id=str(r.image_id), image=str(r.image), semantic=str(r.semantic)) for r in train.itertuples()]


def colour_histogram(rgb_u8: np.ndarray, bins: int = HIST_BINS) -> np.ndarray:
    """Normalised joint RGB histogram (bins³,) float32 of an 8× downsampled copy."""
    h, w = rgb_u8.shape[:2]
    small = cv2.resize(rgb_u8, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
    q = (small.astype(np.int32) * bins) // 256
    idx = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    hist = np.bincount(idx.ravel(), minlength=bins ** 3).astype(np.float32)
    return hist / max(hist.sum(), 1.0)


def _hist_item(item: dict) -> np.ndarray:
    return colour_histogram(read_rgb(item["image"]))


def pair_styles(frames: list[dict], pool: list[dict], pairing: str, seed: int, workers: int = 1) -> list[int]:
    """Index into ``pool`` of each frame's style image.

    ``random``: uniform draw from a generator seeded by (seed, frame id). ``histogram``: the pool
    image with the smallest Hellinger distance between colour histograms (ties → lowest index).
    """
    if pairing == "random":
        return [int(frame_rng(seed, f["frame_id"]).integers(len(pool))) for f in frames]
    if pairing != "histogram":
        raise ConfigError(f"params.yaml: style.pairing must be random or histogram, got {pairing!r}")
    hp = np.sqrt(np.stack(list(map_frames(_hist_item, [dict(p, frame_id=p["image_id"]) for p in pool],
                                          workers=workers, desc="style histograms"))))
    hc = np.sqrt(np.stack(list(map_frames(_hist_item, frames, workers=workers, desc="content histograms"))))
    d2 = (hc ** 2).sum(1)[:, None] + (hp ** 2).sum(1)[None, :] - 2 * hc @ hp.T
    return [int(i) for i in np.argmin(np.round(d2, 6), axis=1)]


# ---------------------------------------------------------------------------- per batch
def _load_pair(item: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    from sim2real.style.photoreal import coarse_from_cityscapes, coarse_from_vkitti2
    content = read_rgb(item["image"])
    style = read_rgb(item["style_image"])
    c_lab = coarse_from_vkitti2(read_class_seg(item["class_seg"])) if item.get("class_seg") else None
    s_lab = None
    if item.get("style_semantic"):
        ids = read_gray_any(item["style_semantic"])
        if ids.ndim != 2:
            raise DataError(item["style_semantic"], "semantic map must be one channel of Cityscapes label ids")
        s_lab = coarse_from_cityscapes(ids)
    if c_lab is not None and c_lab.shape != content.shape[:2]:
        raise DataError(item["class_seg"], f"class map {c_lab.shape} does not match the image {content.shape[:2]}")
    if s_lab is not None and s_lab.shape != style.shape[:2]:
        raise DataError(item["style_semantic"], f"semantic map {s_lab.shape} does not match the image {style.shape[:2]}")
    return content, style, c_lab, s_lab


def _vgg(style_cfg: dict, seed: int, device: str):
    from sim2real.style.nst import NSTConfig, build_features
    from sim2real.style.weights import load_vgg16_features
    cfg = build(NSTConfig, style_cfg["nst"])

    def build_vgg():
        net, source = load_vgg16_features(style_cfg["vgg_weights"], seed=seed)
        return build_features(net, cfg, device), source

    key = (str(style_cfg["vgg_weights"]), seed, device, cfg.content_layers, cfg.style_layers)
    return (cfg, *worker_cache("style.vgg", key, build_vgg))


def vgg_source(style_cfg: dict, seed: int) -> str:
    """Where the VGG16 weights come from ("random" or a path); raises the documented error."""
    from sim2real.style.weights import resolve_vgg16_weights
    return str(resolve_vgg16_weights(style_cfg["vgg_weights"]))


def stylize_photoreal(content, style, c_lab, s_lab, style_cfg: dict, rng):
    """(output, content_loss, style_loss, regions) for one frame with the photoreal method."""
    from sim2real.style.photoreal import PhotorealConfig, moment_mismatch, photoreal_transfer, region_labels
    cfg = build(PhotorealConfig, style_cfg["photoreal"])
    semantic = c_lab is not None and s_lab is not None
    out = photoreal_transfer(content, style, c_lab if semantic else None, s_lab if semantic else None, cfg, rng=rng)
    if semantic:
        a_lab = c_lab
        b_lab = cv2.resize(s_lab, (content.shape[1], content.shape[0]), interpolation=cv2.INTER_NEAREST)
        n = 6
    else:
        n = max(1, cfg.region_bands)
        a_lab = b_lab = region_labels(content.shape[0], content.shape[1], n)
    style_r = cv2.resize(style, (content.shape[1], content.shape[0]), interpolation=cv2.INTER_AREA) \
        if style.shape != content.shape else style
    closs = float(np.mean((out.astype(np.float64) - content) ** 2) / 255.0 ** 2)
    sloss = moment_mismatch(out, a_lab, style_r, b_lab, n_classes=n, min_pixels=cfg.min_pixels)
    return out, closs, sloss, "semantic" if semantic else "bands"


def stylize_nst(contents, styles, style_cfg: dict, seed: int, device: str, inits=None):
    """Fast NST of a batch of same-size frames → (outputs, content losses, style losses, steps).

    ``inits``: optional start images (RGB uint8, one per frame), e.g. their photoreal transfer
    (``style.nst.init: photoreal``); default the content images.
    """
    import torch
    from sim2real.style.nst import fast_nst, to_tensor, to_u8
    cfg, feats, _ = _vgg(style_cfg, seed, device)
    h, w = contents[0].shape[:2]
    styles = [s if s.shape == contents[0].shape else cv2.resize(s, (w, h), interpolation=cv2.INTER_AREA)
              for s in styles]
    init = None if inits is None else to_tensor(list(inits), device)
    out, res = fast_nst(feats, to_tensor(contents, device), to_tensor(styles, device), cfg, init=init)
    if device != "cpu":  # a CUDA device (check_device)
        torch.cuda.synchronize()
    return to_u8(out), res.content_loss.tolist(), res.style_loss.tolist(), res.steps


def stylize_wct2(contents, styles, style_cfg: dict, device: str, c_labs=None, s_labs=None):
    """(outputs, regions per frame) of one WCT2 forward pass over same-size frames."""
    from sim2real.style.wct2 import WCT2Options, stylize_frames
    from sim2real.style.wct2_checkpoints import load_wct2
    net = worker_cache("style.wct2", (str(style_cfg.get("wct2_checkpoints")), device),
                       lambda: load_wct2(style_cfg.get("wct2_checkpoints")).to(device))
    return stylize_frames(net, contents, styles, c_labs, s_labs, WCT2Options.from_params(style_cfg), device)


def model_loads() -> dict:
    """{network key: times built} in this process (a Dask worker: ``client.run(model_loads)``)."""
    return {repr(k): n for k, n in worker_cache_info("style.")["loads"].items()}


def process_batch(batch: dict, *, style_cfg: dict, seed: int, device: str, threads: int,
                  tmp_dir: str, out_dir: str) -> list[dict]:
    """Worker: style one batch of frames, write images + copied labels, return the CSV rows.

    Each row also holds ``seconds`` (this frame's share of the batch's wall-clock time), which
    the stage moves to the timing CSV. Every file goes under ``tmp_dir`` (the stage's temporary
    output, on a file system the workers share when on Dask); rows name ``out_dir`` paths.
    """
    import torch
    torch.set_num_threads(max(1, int(threads)))
    method = style_cfg["method"]
    items = batch["frames"]
    pairs = [_load_pair(it) for it in items]
    rows_extra = []
    outs = []
    if method == "photoreal":
        for it, (c, s, cl, sl) in zip(items, pairs):
            t = time.perf_counter()
            o, closs, sloss, regions = stylize_photoreal(c, s, cl, sl, style_cfg, frame_rng(seed, it["frame_id"]))
            outs.append(o)
            rows_extra.append(dict(steps=0, content_loss=closs, style_loss=sloss, regions=regions,
                                   seconds=time.perf_counter() - t))
    else:
        # one graph per group of equal-size frames
        groups: dict[tuple, list[int]] = {}
        for i, (c, *_rest) in enumerate(pairs):
            groups.setdefault(c.shape, []).append(i)
        outs = [None] * len(items)
        rows_extra = [None] * len(items)
        for idx in groups.values():
            t = time.perf_counter()
            cs, ss = [pairs[i][0] for i in idx], [pairs[i][1] for i in idx]
            if method == "nst":
                inits = None
                if style_cfg["nst"].get("init", "content") == "photoreal":  # warm start, same seeded draw as photoreal
                    inits = [stylize_photoreal(*pairs[i], style_cfg, frame_rng(seed, items[i]["frame_id"]))[0]
                             for i in idx]
                res, lc, ls, steps = stylize_nst(cs, ss, style_cfg, seed, device, inits=inits)
            else:  # wct2: one forward pass, no optimisation losses
                (res, regions), steps = stylize_wct2(cs, ss, style_cfg, device, [pairs[i][2] for i in idx],
                                                     [pairs[i][3] for i in idx]), 0
                lc = ls = [float("nan")] * len(idx)
            sec = (time.perf_counter() - t) / len(idx)
            for j, i in enumerate(idx):
                outs[i] = res[j]
                closs = lc[j] if method == "nst" else float(np.mean((res[j].astype(np.float64) - cs[j]) ** 2) / 255.0 ** 2)
                rows_extra[i] = dict(steps=steps, content_loss=closs, style_loss=ls[j],
                                     regions=regions[j] if method == "wct2" else "global", seconds=sec)
    rows = []
    for it, o, extra in zip(items, outs, rows_extra):
        fid = it["frame_id"]
        image = Path(tmp_dir) / "images" / f"{fid}.jpg"
        write_image(image, o, jpeg_quality=int(style_cfg.get("jpeg_quality", 95)))
        label_src = Path(it["label"])
        if not label_src.is_file():
            raise DataError(label_src, f"label file of frame {fid} not found")
        shutil.copyfile(label_src, Path(tmp_dir) / "labels" / f"{fid}.txt")
        rows.append(dict(frame_id=fid, image=str(Path(out_dir) / "images" / f"{fid}.jpg"),
                         label=str(Path(out_dir) / "labels" / f"{fid}.txt"), style_image_id=it["style_image_id"],
                         method=method, **extra))
    return rows


# ---------------------------------------------------------------------------- grid
def _thumb(rgb: np.ndarray, width: int, title: str) -> np.ndarray:
    h, w = rgb.shape[:2]
    t = cv2.resize(rgb, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    t = np.ascontiguousarray(t)
    cv2.putText(t, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(t, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return t


def make_grid(items: list[dict], style_cfg: dict, seed: int, device: str, width_px: int = 414) -> np.ndarray:
    """Rows of content | style | nst | photoreal thumbnails for ``items`` (RGB uint8)."""
    rows = []
    for it in items:
        c, s, cl, sl = _load_pair(it)
        photo = stylize_photoreal(c, s, cl, sl, style_cfg, frame_rng(seed, it["frame_id"]))[0]
        warm = style_cfg["nst"].get("init", "content") == "photoreal"
        nst_out = stylize_nst([c], [s], style_cfg, seed, device, inits=[photo] if warm else None)[0][0]
        tiles = [_thumb(c, width_px, f"content {it['frame_id']}"), _thumb(s, width_px, f"style {it['style_image_id']}"),
                 _thumb(nst_out, width_px, "nst"), _thumb(photo, width_px, "photoreal")]
        h = min(t.shape[0] for t in tiles)
        rows.append(np.concatenate([t[:h] for t in tiles], axis=1))
    return np.concatenate(rows, axis=0)


# ---------------------------------------------------------------------------- run
def check_style_config(style_cfg: dict, device: str) -> None:
    """Fail early, naming the param, before any frame is processed."""
    method = style_cfg.get("method")
    if method not in METHODS:
        raise ConfigError(f"params.yaml: style.method must be one of {', '.join(METHODS)}, got {method!r}")
    if int(style_cfg.get("batch_size", 1)) < 1:
        raise ConfigError("params.yaml: style.batch_size must be >= 1")
    check_device(device, "compute.device")
    from sim2real.style.nst import NSTConfig
    from sim2real.style.photoreal import PhotorealConfig
    build(NSTConfig, style_cfg["nst"])
    build(PhotorealConfig, style_cfg["photoreal"])


def _absolute(frames: list[dict]) -> None:
    """Make the input paths of ``frames`` absolute (Dask workers may run in another folder)."""
    for f in frames:
        for k in ("image", "label", "class_seg", "style_image", "style_semantic"):
            if f.get(k):
                f[k] = os.path.abspath(f[k])


def run(dedupe_dir, real_dir, out_dir, report, style_cfg: dict, seed: int, device: str, workers: int,
        grid: str | Path | None = None, *, roots: Sequence[str | Path], timing: str | Path | None = None, tracker=None,
        scheduler="local", batch_size: int | None = None, max_in_flight: int | None = None,
        resume_dir: str | Path | None = None, on_error: str = "fail", outputs=None,
        max_skip_fraction: float | None = None) -> dict:
    """The stage: style every frame of ``dedupe_dir`` → the variant dataset ``out_dir`` + ``report``.

    ``scheduler`` / ``batch_size`` (frames per Dask task) / ``max_in_flight`` / ``resume_dir`` are
    :func:`sim2real.parallel.compute_options`'s; they change where batches run, never the bytes
    (the torch thread count per process does: it is ``cpu_count // workers`` everywhere, ``workers`` being ``compute.processes``).
    ``roots``: the data roots the manifests' paths must lie in (:func:`sim2real.safety.data_roots`).
    ``timing``: CSV of wall-clock seconds; ``tracker``: an entered :class:`sim2real.tracking.Tracker`.
    ``on_error``: only ``fail`` (a bad frame stops the stage, naming it; ``max_skip_fraction``
    is therefore unused). ``outputs``: the stage's :func:`sim2real.io.atomic_outputs` transaction (default: its own);
    every output is renamed into place only after all work, the grid included, succeeded.
    Returns the report dict (deterministic: no wall-clock numbers).
    """
    check_style_config(style_cfg, device)
    if on_error != "fail":
        raise ConfigError(f"style_transfer: data.on_error {on_error!r} is not supported (a bad frame stops the stage)")
    method = style_cfg["method"]
    t_start = time.perf_counter()
    uses_vgg = method == "nst" or (grid is not None and int(style_cfg.get("grid_frames", 1)) > 0)
    source = vgg_source(style_cfg, seed) if uses_vgg else None
    if method == "wct2":
        from sim2real.style.wct2 import WCT2Options
        from sim2real.style.wct2_checkpoints import load_wct2
        WCT2Options.from_params(style_cfg)
        load_wct2(style_cfg.get("wct2_checkpoints"))  # the clear errors, before any work
    frames = read_content_frames(dedupe_dir, roots=roots)
    pool = read_style_pool(real_dir, bool(style_cfg.get("semantic_only", False)), roots=roots)
    distributed = is_distributed(scheduler)
    workers = 1 if device != "cpu" else max(1, int(workers))
    pick = pair_styles(frames, pool, str(style_cfg.get("pairing", "random")), seed, workers)
    for f, k in zip(frames, pick):
        f.update(style_image_id=pool[k]["image_id"], style_image=pool[k]["image"], style_semantic=pool[k]["semantic"])
    bs = int(style_cfg.get("batch_size", 1))
    batches = [dict(frame_id=f"{frames[i]['frame_id']}..{frames[min(i + bs, len(frames)) - 1]['frame_id']}",
                    frames=[dict(f) for f in frames[i:i + bs]]) for i in range(0, len(frames), bs)]
    if distributed:
        for b in batches:
            _absolute(b["frames"])
    threads = max(1, (os.cpu_count() or 1) // workers)
    opts = dict(scheduler=scheduler, max_in_flight=max_in_flight,
                # compute.batch_size counts frames per Dask task; an item here is a style batch
                batch_size=max(1, int(batch_size or 8) // bs))
    if resume_dir is not None:
        opts.update(resume_dir=resume_dir, resume_write_arg="tmp_dir")
    rows: list[dict] = []
    times: list[dict] = []
    with atomic_outputs() if outputs is None else contextlib.nullcontext(outputs) as outs:
        tmp = outs.dir(out_dir)
        (tmp / "images").mkdir()
        (tmp / "labels").mkdir()
        tmp_dir = os.path.abspath(tmp) if distributed else str(tmp)
        for k, batch_rows in enumerate(map_frames(process_batch, batches, workers=workers,
                                                  desc=f"style_transfer ({method})", **opts,
                                                  frames_per_item=lambda b: len(b["frames"]),
                                                  style_cfg=style_cfg, seed=seed, device=device, threads=threads,
                                                  tmp_dir=tmp_dir, out_dir=str(out_dir))):
            for r in batch_rows:
                times.append(dict(frame_id=r["frame_id"], batch=k, seconds=float(r.pop("seconds"))))
            rows.extend(batch_rows)
            if tracker is not None:
                tracker.log({"batch": batch_metrics(batch_rows)}, step=k)
        table = pd.DataFrame(rows, columns=CSV_COLUMNS)
        table.to_csv(tmp / "frames.csv", index=False, float_format="%.6g")
        if grid is not None:  # the last step that can fail (it loads VGG16): before any rename
            n = max(1, int(style_cfg.get("grid_frames", 1)))
            img = make_grid(frames[:n], style_cfg, seed, device)
            write_image(outs.path(grid), img, jpeg_quality=90)
            if tracker is not None:
                tracker.log_image("style_grid", img)
        summary = summarise(table, style_cfg, source, device, pool)
        outs.json(report, summary)
        stage_seconds = time.perf_counter() - t_start
        if timing is not None:
            with outs.file(timing) as fh:
                pd.DataFrame(times, columns=TIMING_COLUMNS).to_csv(fh, index=False, float_format="%.4f")
        if tracker is not None:
            tracker.summary(summary)
            tracker.run_info({"stage_seconds": stage_seconds,
                              "mean_seconds_per_frame": float(np.mean([t["seconds"] for t in times])) if times else None})
    return summary


def batch_metrics(rows: list[dict]) -> dict:
    """Per-batch numbers for the tracker: mean losses and steps, frames (no wall-clock time)."""
    def mean(key):
        v = [float(r[key]) for r in rows if r.get(key) is not None and np.isfinite(float(r[key]))]
        return float(np.mean(v)) if v else None
    return {"content_loss": mean("content_loss"), "style_loss": mean("style_loss"), "steps": mean("steps"),
            "frames": len(rows)}


def summarise(table: pd.DataFrame, style_cfg: dict, source: str | None, device: str, pool: list[dict]) -> dict:
    """The report: counts and mean losses; no wall-clock numbers (those go to the timing CSV)."""
    def mean(col):
        v = pd.to_numeric(table[col], errors="coerce").dropna()
        return float(v.mean()) if len(v) else None
    return {
        "method": style_cfg["method"],
        "pairing": style_cfg.get("pairing", "random"),
        "frames": int(len(table)),
        "style_pool_train_frames": len(pool),
        "style_pool_with_semantic": sum(1 for p in pool if p["semantic"]),
        "style_images_used": int(table["style_image_id"].nunique()) if len(table) else 0,
        "frames_semantic_regions": int((table["regions"] == "semantic").sum()) if len(table) else 0,
        "vgg_weights": source,
        "device": device,
        "mean_steps": mean("steps"),
        "mean_content_loss": mean("content_loss"),
        "mean_style_loss": mean("style_loss"),
    }
