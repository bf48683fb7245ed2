"""Stage `cyclegan_train`: train a CycleGAN sim→real on dedupe frames (A) and the real train split (B).

Params: cyclegan.variations, cyclegan.train, seed, compute. Checkpoints go to a DVC
``persist: true`` folder so a killed run resumes when rerun; the exported A→B generator
(state_dict, ``torch.load(weights_only=True)``), its metadata and a sample grid go to ``--out``.
"""
from __future__ import annotations

import os

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a shared or busy
# machine spinning threads made a 2-thread training step ~20x slower (measured: 9.3 s vs 0.42 s
# CPU per step with other jobs running); on an idle machine the difference is negligible.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
from pathlib import Path

import torch

from sim2real.cyclegan.checkpoint import params_hash, save_generator
from sim2real.cyclegan.train import (LOSS_NAMES, CycleGANTrainConfig, data_fingerprint, domain_frames, final_losses, sample_grid,
                                     train, write_losses_csv)
from sim2real.formats.images import read_rgb, write_image
from sim2real.cli import entrypoint
from sim2real.manifest import read_manifest
from sim2real.io import atomic_outputs, write_json
from sim2real.params import build, load_params
from sim2real.safety import data_roots
from sim2real.tracking import Tracker


def cli(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--synthetic", required=True, help="dedupe output folder (has frames.csv)")
    ap.add_argument("--real", required=True, help="ingest output folder (has real_frames.csv)")
    ap.add_argument("--checkpoints", required=True, help="persistent checkpoint folder (last.pt)")
    ap.add_argument("--out", required=True, help="model output folder (generator_a2b.pt, model.json, samples.jpg)")
    ap.add_argument("--losses", required=True, help="per-iteration loss CSV for dvc plots")
    ap.add_argument("--report", required=True, help="summary metrics JSON")
    ap.add_argument("--live", default=None, help="DVCLive folder (metrics.json + step history)")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = cli(argv)
    p = load_params("cyclegan", "seed", "compute", "data", "tracking")
    cg = p.cyclegan
    cfg = build(CycleGANTrainConfig, cg.train, seed=int(p.seed), device=str(p.compute.device))
    torch.set_num_threads(int(p.compute.torch_threads))
    frames_csv, real_csv = Path(args.synthetic) / "frames.csv", Path(args.real) / "real_frames.csv"
    roots = data_roots(p.data)
    paths_a, paths_b = domain_frames(read_manifest(frames_csv, roots=roots, all_str=True),
                                     read_manifest(real_csv, roots=roots, all_str=True), list(cg.variations),
                                     frames_path=frames_csv, real_path=real_csv)
    phash = params_hash({"train": cfg.hashed(), "variations": list(cg.variations)},
                        data_fingerprint(paths_a, paths_b))
    config = {"train": dict(cg.train), "variations": list(cg.variations), "seed": int(p.seed),
              "device": cfg.device, "frames_a": len(paths_a), "frames_b": len(paths_b), "params_hash": phash}
    # all outputs (model, losses, report, DVCLive folder) are renamed into place together, last;
    # only the persist checkpoints are written as training goes (that is what they are for)
    with atomic_outputs() as outs, \
            Tracker("cyclegan_train", None, config=config, dvclive_dir=args.live, tracking=p.tracking,
                    outputs=outs) as tracker:
        logged: list[int] = []

        def on_iteration(step: int, losses: dict) -> None:
            logged.append(step)
            tracker.log(losses, step=step)

        result = train(cfg, paths_a, paths_b, args.checkpoints, params_hash=phash, on_iteration=on_iteration)
        trainer = result.trainer
        if not logged:  # resumed from a finished checkpoint: replay its history so the curves survive the rerun
            for i, step in enumerate(trainer.history["step"]):
                tracker.log({k: trainer.history[k][i] for k in ("lr", *LOSS_NAMES)}, step=int(step))
        grid = sample_grid(trainer.model, read_rgb(paths_a[0]), read_rgb(paths_b[0]))
        tracker.log_image("samples", grid)
        tmp = outs.dir(args.out)
        save_generator(tmp / "generator_a2b.pt", trainer.model.g_ab)
        write_image(tmp / "samples.jpg", grid, jpeg_quality=90)
        write_json(tmp / "model.json", {"ngf": cfg.ngf, "n_blocks": cfg.n_blocks, "iterations": result.total_iterations,
                                        "params_hash": phash, "direction": "A2B (synthetic -> real)",
                                        "load": "torch.load(path, weights_only=True) -> state_dict"})
        write_losses_csv(outs.path(args.losses), trainer.history)
        summary = {
            "iterations": result.total_iterations,
            "frames_a": len(paths_a),
            "frames_b": len(paths_b),
            "final": final_losses(trainer.history),
        }
        tracker.summary(summary)
        tracker.run_info({"seconds": round(result.seconds, 2), "resumed_from": result.resumed_from,
                          "restarted_on_params_change": bool(result.restarted_reason)})
        outs.json(args.report, {**summary, "params_hash": phash})
    print(f"cyclegan_train: {result.total_iterations} iterations (resumed from {result.resumed_from}) "
          f"in {result.seconds:.1f} s on {len(paths_a)} synthetic / {len(paths_b)} real frames")


if __name__ == "__main__":
    entrypoint(main)
