"""Calibrate the realism to the real camera: fit blur, haze, noise, JPEG and colour so that the
augmented synthetic frames have the real frames' statistics (see :mod:`.fit` for the method,
:mod:`.stats` for the statistics, :mod:`.data` for the inputs). :func:`run` is the stage's body."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from sim2real.calibrate.data import read_real_frames, read_sim_frames
from sim2real.calibrate.fit import GROUPS, Settings, calibrate, comparison
from sim2real.errors import ConfigError, DataError

OVERLAY_SECTIONS = ("blur", "haze", "camera")


def blur_at(fitted_blur: dict, base_blur: dict, distance_m: float) -> float:
    """σ (px) of the linear distance curve at ``distance_m`` for the fitted (else base) blur values."""
    b = {**base_blur, **fitted_blur}
    sigma, near, far = (float(np.mean(b[k])) for k in ("sigma", "near_m", "far_m"))
    return sigma * float(np.clip((distance_m - near) / (far - near), 0.0, 1.0))


#: the relative errors within which calibrate must recover the demo's hidden camera (None: reported only)
RECOVERY_TOLERANCE = {"noise_sigma": 0.20, "haze_visibility_m": 0.25, "blur_sigma_at_30m_px": 0.25,
                      "wb_gain_r": 0.05, "wb_gain_b": 0.05, "contrast": None}


def recovery(fitted: dict, params: dict, hidden: dict) -> dict:
    """{param: {hidden, recovered, rel_error, tolerance}} for the demo's hidden camera
    (:func:`sim2real.demo.realism.physics_equivalent`); the noise is the model's σ at mid-gray;
    ``tolerance`` from :data:`RECOVERY_TOLERANCE`."""
    cam = {**(params.get("camera") or {}), **fitted.get("camera", {})}
    shot = float(np.mean(cam.get("shot_gain") or 0.0))
    read = float(np.mean(cam.get("read_sigma") or 0.0))
    rec = {"noise_sigma": math.sqrt(read ** 2 + shot * 128.0),
           "haze_visibility_m": float(np.mean({**(params.get("haze") or {}), **fitted.get("haze", {})}["visibility_m"])),
           "blur_sigma_at_30m_px": blur_at(fitted.get("blur", {}), params.get("blur") or {}, 30.0),
           "wb_gain_r": float(cam.get("wb_gain_r") or 1.0), "wb_gain_b": float(cam.get("wb_gain_b") or 1.0),
           "contrast": float(np.mean(cam.get("contrast") or 1.0))}
    return {k: {"hidden": round(hidden[k], 5), "recovered": round(rec[k], 5),
                "rel_error": round(abs(rec[k] - hidden[k]) / abs(hidden[k]), 5),
                "tolerance": RECOVERY_TOLERANCE.get(k)} for k in hidden}


def curves(result: dict) -> dict[str, pd.DataFrame]:
    """Fitted-vs-real statistic curves: blur, sharpness and contrast per distance bin."""
    out = {}
    for name in ("blur", "sharpness", "contrast"):
        r, b, a = (getattr(result[k], name) for k in ("real", "before", "after"))
        out[f"{name}_vs_distance"] = pd.DataFrame({
            "distance_m": r.distance_m, "real": r.median, "before": b.median, "after": a.median,
            "n_real": r.count, "n_sim": a.count}).dropna(subset=["distance_m"])
    return out


def run(dedupe_dir: str | Path, ingest_dir: str | Path, params: dict, settings: Settings, *, classes: list[str],
        max_sim_frames: int | None, max_real_frames: int | None, roots: Sequence[str | Path], hidden: dict | None = None,
        progress: Callable[[str], None] = lambda step: None) -> tuple[dict, dict, dict[str, pd.DataFrame]]:
    """Read the inputs, fit, and return (fitted params overlay, report, curves).

    ``params``: the blur, haze and camera sections the fit starts from (the hand-set values);
    ``roots``: the data roots every manifest path must lie in (:func:`sim2real.safety.data_roots`);
    ``hidden``: the demo camera in physics terms, adds the ``recovery`` table to the report.
    """
    unknown = set(settings.fit) - set(GROUPS)
    if unknown:
        raise ConfigError(f"calibrate.fit: unknown group(s) {sorted(unknown)}; choose from {list(GROUPS)}")
    ingest_dir = Path(ingest_dir)
    sim = read_sim_frames(dedupe_dir, max_sim_frames, settings.seed, roots=roots)
    real = read_real_frames(ingest_dir / "real_frames.csv", ingest_dir / "real_boxes.csv", classes, max_real_frames,
                            settings.seed, roots=roots)
    if len(sim) < 2 or len(real) < 2:
        raise DataError(ingest_dir, f"calibration needs >= 2 frames per side, got {len(sim)} synthetic and "
                                    f"{len(real)} real train frames")
    progress(f"read {len(sim)} synthetic and {len(real)} real train frames")
    result = calibrate(sim, real, params, settings, progress)
    fitted = result["params"]
    report = {
        "frames": {"synthetic": [f.frame_id for f in sim], "real_train": [r.image_id for r in real]},
        "fitted": fitted,
        "start": {sec: {k: (params.get(sec) or {}).get(k) for k in kv} for sec, kv in fitted.items()},
        "statistics": comparison(result["real"], result["before"], result["after"], settings.min_bin_count),
        "steps": result["steps"],
        "real": result["real"].summary(), "before": result["before"].summary(), "after": result["after"].summary(),
        "directions": "statistics: distance to the real train frames, lower is better; before = the hand-set "
                      "params.yaml values, after = the fitted ones",
    }
    if hidden is not None:
        report["recovery"] = recovery(fitted, params, hidden)
    return fitted, report, curves(result)


__all__ = ["run", "recovery", "RECOVERY_TOLERANCE", "blur_at", "curves", "Settings", "OVERLAY_SECTIONS"]
