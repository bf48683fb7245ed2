"""Stage `demo`: write the embedded miniature vKITTI2 + KITTI world (params: demo, compute.processes)."""
from __future__ import annotations

import argparse

from sim2real.demo import generate
from sim2real.demo.world import Traffic
from sim2real.cli import entrypoint
from sim2real.io import atomic_dir
from sim2real.params import load_params, plain


def cli(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="output folder (gets vkitti2/ and kitti/)")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = cli(argv)
    p = load_params("demo", "compute")
    d = p.demo
    with atomic_dir(args.out) as tmp:
        counts = generate(tmp, seed=int(d.seed), scenes=int(d.scenes), frames_per_scene=int(d.frames_per_scene),
                          variations=list(d.variations), real_frames=int(d.real_frames),
                          real_seg_every=int(d.real_seg_every), workers=int(p.compute.processes),
                          real_camera=plain(d.get("real_camera") or {}),
                          traffic=Traffic.from_params(d.traffic), ego_speed_m=float(d.ego_speed_m))
    print(f"demo world written to {args.out}: {counts}")


if __name__ == "__main__":
    entrypoint(main)
