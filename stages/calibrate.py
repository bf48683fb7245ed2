"""Stage `calibrate`: fit blur, haze, noise, JPEG and colour to the real camera's statistics.

Reads the deduplicated synthetic frames (with depth and instance masks) and the real KITTI
**train** split (val is never opened), on seeded subsamples of at most
``calibrate.max_sim_frames`` / ``max_real_frames`` frames, and writes the fitted values as a
params-shaped overlay (``<out>/params.yaml``: blur/haze/camera keys, read by
depth_blur_calibrated), the report JSON (each fitted parameter, every statistic before/after,
the objective curves; on the demo world the hidden-vs-recovered ``recovery`` table) and the
fitted-vs-real curve CSVs. Params: calibrate, blur, haze, camera, gap.denoise_sigma_px,
gap.min_box_px, seed, classes, data.source, demo.real_camera. Method: docs/calibration.md.
"""
from __future__ import annotations

import argparse
import os
import time

import yaml
from tqdm import tqdm

from sim2real.calibrate import Settings, run
from sim2real.cli import entrypoint
from sim2real.demo.realism import physics_equivalent
from sim2real.io import atomic_dir, atomic_file, write_json
from sim2real.params import build, load_params, plain
from sim2real.safety import data_roots


def cli(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dedupe", required=True, help="dedupe output folder (frames.csv, boxes_kept.csv)")
    ap.add_argument("--ingest", required=True, help="ingest output folder (real_frames.csv, real_boxes.csv)")
    ap.add_argument("--out", required=True, help="folder for params.yaml (the fitted overlay)")
    ap.add_argument("--report", required=True, help="report JSON (reports/calibration.json)")
    ap.add_argument("--curves", required=True, help="folder for the fitted-vs-real curve CSVs")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = cli(argv)
    p = load_params("calibrate", "blur", "haze", "camera", "gap", "seed", "classes", "data", "demo")
    cal = p.calibrate
    settings = build(Settings, cal, seed=int(p.seed), denoise_sigma_px=float(p.gap.denoise_sigma_px),
                     min_box_px=int(p.gap.min_box_px))
    params = {"blur": plain(p.blur), "haze": plain(p.haze), "camera": plain(p.camera)}
    hidden = physics_equivalent(plain(p.demo.get("real_camera") or {})) if p.data.source == "demo" else None
    t0 = time.perf_counter()
    with tqdm(total=4 + len(settings.fit) + ("noise" in settings.fit), desc="calibrate", unit="step",
              disable=os.environ.get("SIM2REAL_NO_PROGRESS") == "1") as bar:
        def progress(step: str) -> None:
            bar.set_postfix_str(step)
            bar.update(1)
        fitted, report, curves = run(args.dedupe, args.ingest, params, settings, classes=list(p.classes),
                                     max_sim_frames=cal.max_sim_frames, max_real_frames=cal.max_real_frames,
                                     roots=data_roots(p.data), hidden=hidden, progress=progress)
    with atomic_dir(args.out) as tmp, atomic_file(tmp / "params.yaml") as fh:
        fh.write("# written by the calibrate stage (reports/calibration.json has the evidence); laid over\n"
                 "# params.yaml's blur/haze/camera by depth_blur_calibrated\n")
        yaml.safe_dump(fitted, fh, sort_keys=True)
    with atomic_dir(args.curves) as tmp:
        for name, df in curves.items():
            df.to_csv(tmp / f"{name}.csv", index=False, float_format="%.6g")
    write_json(args.report, report)
    print(f"calibrate: {yaml.safe_dump(fitted, default_flow_style=True).strip()} "
          f"({time.perf_counter() - t0:.0f} s)")
    for k, v in (report.get("recovery") or {}).items():
        print(f"  {k}: hidden {v['hidden']:.4g}, recovered {v['recovered']:.4g} ({100 * v['rel_error']:.1f} %)")


if __name__ == "__main__":
    entrypoint(main)
