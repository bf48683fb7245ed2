"""The embedded miniature world (see :mod:`sim2real.demo.world`)."""
from __future__ import annotations

from pathlib import Path

from sim2real.demo.world import (SceneJob, Traffic, render_kitti_frame, render_vkitti_frame, scene_name,
                                 write_scene_textgt)
from sim2real.parallel import map_frames


def generate(out: str | Path, *, seed: int, scenes: int, frames_per_scene: int, variations, real_frames: int,
             real_seg_every: int, workers: int = 1, real_camera: dict | None = None,
             traffic: Traffic = Traffic(), ego_speed_m: float = 1.2) -> dict:
    """Write the miniature vKITTI2 (``out/vkitti2``) and KITTI (``out/kitti``) datasets.

    Deterministic: the same arguments give byte-identical files whatever ``workers`` is.
    ``real_camera`` overrides the "real" camera's hidden degradation
    (:data:`sim2real.demo.realism.DEFAULTS`); ``traffic``: vehicle count, distances and classes of
    both sides; ``ego_speed_m``: metres the synthetic camera drives per frame (larger = less alike
    consecutive frames).
    Returns counts for the stage report.
    """
    out = Path(out)
    vk_root = out / "vkitti2"
    vk_root.mkdir(parents=True, exist_ok=True)
    jobs = [SceneJob(str(vk_root), scene_name(i), i, frames_per_scene, tuple(variations), seed, traffic, ego_speed_m)
            for i in range(scenes)]
    items = [(job, f) for job in jobs for f in range(frames_per_scene)]
    rows_by_scene: dict[str, list[dict]] = {job.scene: [] for job in jobs}
    for (job, _), rows in zip(items, map_frames(render_vkitti_frame, items, workers=workers, desc="demo vkitti2")):
        rows_by_scene[job.scene].extend(rows)
    for job in jobs:
        write_scene_textgt(vk_root, job, rows_by_scene[job.scene])
    cam = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in (real_camera or {}).items()}
    kitti_items = [(str(out / "kitti"), i, seed, real_seg_every, cam, traffic) for i in range(real_frames)]
    for _ in map_frames(render_kitti_frame, kitti_items, workers=workers, desc="demo kitti"):
        pass
    return {"scenes": scenes, "frames_per_scene": frames_per_scene, "variations": list(variations),
            "real_frames": real_frames, "bbox_rows": sum(len(r) for r in rows_by_scene.values())}
