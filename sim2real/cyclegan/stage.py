"""The ``cyclegan_translate`` stage's work: translate the chosen synthetic frames with an A→B
CycleGAN generator, write the variant dataset and a report with the measured domain statistics.

:func:`run` is the stage (``stages/cyclegan_translate.py`` is its command line; its docstring
lists the params and the backends). Each process (this one or a Dask worker) loads the generator
once (:func:`cached_generator`, keyed by path + SHA-256 of the weights).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from sim2real.cyclegan.checkpoint import GENERATOR_PARAM, load_generator
from sim2real.cyclegan.stats import DomainStats, edge_correlation, lab_histogram, laplacian_log_var
from sim2real.cyclegan.translate import check_translate_params, translate_image
from sim2real.errors import ConfigError, DataError
from sim2real.formats.images import read_rgb, write_image
from sim2real.manifest import read_manifest
from sim2real.io import atomic_outputs
from sim2real.parallel import SkipLog, check_device, compute_options, is_distributed, map_frames, worker_cache, \
    worker_cache_info


# ----------------------------------------------------------------------------- generator cache
CACHE_KIND = "cyclegan.generator"  # sim2real.parallel.worker_cache: one generator per process


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cached_generator(path: str | Path, sha256: str, device: str = "cpu") -> torch.nn.Module:
    """The A→B generator at ``path``, loaded once per process (``weights_only=True``).

    Keyed by the absolute path, the SHA-256 the client computed and the device; a file whose
    hash differs (weights changed during the run, or another file on this worker machine)
    raises DataError naming it. Only the latest generator is kept (:func:`sim2real.parallel.worker_cache`).
    """
    def build() -> torch.nn.Module:
        actual = file_sha256(path) if Path(path).is_file() else None
        if actual is not None and actual != sha256:
            raise DataError(path, f"generator weights differ from the ones this run started with "
                                  f"(sha256 {actual[:12]}… != {str(sha256)[:12]}…): every worker must "
                                  f"see the same file")
        return load_generator(path, device, param=GENERATOR_PARAM)  # DataError naming the file and param

    return worker_cache(CACHE_KIND, (os.path.abspath(path), str(sha256), str(device)), build, latest_only=True)


def generator_cache_info() -> dict:
    """This process's cache: ``{"pid", "loads", "cached"}`` (for tests and ``client.run``)."""
    info = worker_cache_info(CACHE_KIND)
    return {"pid": info["pid"], "loads": sum(info["loads"].values()), "cached": [k[1][0] for k in info["cached"]]}


def translate_frame(row: dict, *, model: str, model_sha256: str, device: str, torch_threads: int, out_dir: str,
                    final_dir: str, mode: str, tile_px: int, overlap_px: int, amp: bool, jpeg_quality: int,
                    base_dir: str | None = None) -> dict:
    """Translate one frame into ``out_dir`` (the temporary output); returns its CSV row and stats.

    Runs in this process or in a Dask worker: the generator comes from :func:`cached_generator`;
    torch uses ``torch_threads`` threads (the same count everywhere, so the bytes match); relative
    manifest paths are read relative to ``base_dir`` (the client's repository root) when given.
    """
    if torch.get_num_threads() != int(torch_threads):
        torch.set_num_threads(int(torch_threads))
    generator = cached_generator(model, model_sha256, device)
    fid = row["frame_id"]
    image_path = Path(base_dir or "") / row["image"]
    src = read_rgb(image_path)
    out = translate_image(generator, src, mode=mode, tile_px=tile_px, overlap_px=overlap_px, amp=amp)
    if out.shape != src.shape:  # translate_image guarantees this; checked again because boxes depend on it
        raise DataError(row["image"], f"translated size {out.shape} != input size {src.shape}")
    write_image(Path(out_dir) / "images" / f"{fid}.jpg", out, jpeg_quality=jpeg_quality)
    label = Path(base_dir or "") / row["label"]
    if not label.is_file():
        raise DataError(row["label"], f"label file of frame {fid} not found")
    shutil.copyfile(label, Path(out_dir) / "labels" / f"{fid}.txt")
    rec = dict(row)
    final_dir = Path(final_dir)
    rec.update(image=str(final_dir / "images" / f"{fid}.jpg"), label=str(final_dir / "labels" / f"{fid}.txt"),
               source_image=row["image"], edge_corr=round(edge_correlation(src, out), 4),
               mean_abs_diff=round(float(np.abs(out.astype(np.int16) - src).mean()), 3))
    return {"row": rec, "raw_hist": lab_histogram(src), "raw_sharp": laplacian_log_var(src),
            "out_hist": lab_histogram(out), "out_sharp": laplacian_log_var(out)}


def real_stats(real: pd.DataFrame, split: str) -> DomainStats:
    stats = DomainStats()
    for path in real.loc[real["split"] == split, "image"]:
        stats.add(read_rgb(path))
    return stats


def run(synthetic: str | Path, real_dir: str | Path, model: str | Path, out: str | Path, report_path: str | Path,
        *, cyclegan, compute, data, roots: Sequence[str | Path]) -> tuple[dict, float]:
    """The stage: translate the frames of ``synthetic`` -> the variant dataset ``out`` + ``report_path``.

    ``model``: generator weights file or a cyclegan_train model folder; ``cyclegan`` / ``compute``
    / ``data``: the params sections (as :func:`sim2real.params.load_params` returns them); ``roots``:
    the data roots the manifests' paths must lie in (:func:`sim2real.safety.data_roots`).
    Returns (the report dict, seconds spent translating).
    """
    tp = cyclegan.translate
    mode, tile_px, overlap_px = str(tp.mode), int(tp.tile_px), int(tp.overlap_px)
    check_translate_params(mode, tile_px, overlap_px)
    device = check_device(compute.device, "compute.device")
    torch.set_num_threads(int(compute.torch_threads))
    variations = [str(v) for v in cyclegan.variations]
    frames_csv = Path(synthetic) / "frames.csv"
    frames = read_manifest(frames_csv, roots=roots, all_str=True)
    for col in ("frame_id", "variation", "image", "label"):
        if col not in frames.columns:
            raise DataError(frames_csv, f"missing column '{col}'")
    frames = frames[frames["variation"].isin(variations)]
    if frames.empty:
        raise ConfigError(f"cyclegan.variations {variations}: no frames in {frames_csv}")
    real_csv = Path(real_dir) / "real_frames.csv"
    real = read_manifest(real_csv, roots=roots, all_str=True)
    model = Path(model)
    if model.is_dir() or not model.suffix:  # a cyclegan_train model folder (weights files have a suffix)
        model = model / "generator_a2b.pt"
    if not model.is_file():
        load_generator(model, device, param=GENERATOR_PARAM)  # DataError naming the file, param and what makes it
    model_sha256 = file_sha256(model)
    layout = cached_generator(model, model_sha256, device).layout  # fail early on a bad file; warms the cache
    opts = compute_options(compute, data, stage="cyclegan_translate")
    # local: in-process, torch already uses compute.torch_threads threads for the convolutions (forking
    # after torch started its thread pool is unsafe); Dask: one frame per worker thread at a time
    opts["workers"] = 1
    remote = is_distributed(opts["scheduler"])  # workers get absolute paths (their cwd may differ)

    raw, translated = DomainStats(), DomainStats()
    rows = []
    skips = SkipLog(name="cyclegan_translate")  # data.on_error: skip -> a bad frame is left out and listed
    records = frames.to_dict("records")
    t0 = time.perf_counter()
    with atomic_outputs() as outs:  # both outputs renamed into place together, after all work
        tmp = outs.dir(out)
        (tmp / "images").mkdir()
        (tmp / "labels").mkdir()
        for res in map_frames(translate_frame, records, desc="cyclegan_translate", **opts,
                              model=os.path.abspath(model), model_sha256=model_sha256, device=device,
                              torch_threads=int(compute.torch_threads), out_dir=os.path.abspath(tmp),
                              final_dir=str(out), base_dir=os.getcwd() if remote else None, mode=mode,
                              tile_px=tile_px, overlap_px=overlap_px, amp=bool(tp.amp) and device != "cpu",
                              jpeg_quality=int(tp.jpeg_quality)):
            if skips.take(res):
                continue
            rows.append(res["row"])
            raw.add_summary(res["raw_hist"], res["raw_sharp"])
            translated.add_summary(res["out_hist"], res["out_sharp"])
        pd.DataFrame(rows).to_csv(tmp / "frames.csv", index=False)
        seconds = time.perf_counter() - t0
        counts = skips.report(frames_in=len(records), frames_out=len(rows))  # fails when no frame is left
        edge = np.array([r["edge_corr"] for r in rows])
        report = {"frames": len(rows), "mode": mode, "device": device,
                  "generator": {"file": str(model), "sha256": model_sha256, "layout": layout.layout,
                                "dropped_running_stats": layout.dropped_running_stats},
                  "edge_corr": {"min": float(edge.min()), "mean": float(edge.mean())}, **counts}
        for split in ("train", "val"):
            ref = real_stats(real, split)
            if ref.n == 0:
                continue
            d_raw, d_out = raw.distance(ref), translated.distance(ref)
            report[f"real_{split}"] = {
                "frames": ref.n,
                "lab_w1_raw": round(d_raw["lab_w1"], 4), "lab_w1_translated": round(d_out["lab_w1"], 4),
                "sharpness_gap_raw": round(d_raw["sharpness_gap"], 4),
                "sharpness_gap_translated": round(d_out["sharpness_gap"], 4),
            }
        outs.json(report_path, report)
    return report, seconds
