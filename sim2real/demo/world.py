"""The embedded miniature world: a seeded generator that writes a tiny Virtual KITTI 2 and a
tiny KITTI object dataset in their exact on-disk formats.

Synthetic side (``<out>/vkitti2``): ``scenes`` x ``variations`` (clone, fog) x Camera_0/1,
1242x375, rgb/depth/classSegmentation/instanceSegmentation + textgt (bbox, info, colors,
intrinsic, extrinsic, pose), with the real dataset's label quirks planted so dedupe has work:
the same box listed under two classes, 5x4 px slivers, fully hidden objects, both cameras in
one bbox.txt.

"Real" side (``<out>/kitti``): independent random road scenes seen through KITTI's camera,
degraded by :mod:`sim2real.demo.realism`, with label_2 (incl. DontCare), calib and a few
Cityscapes-id semantic maps.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sim2real.demo.realism import DEFAULTS as REAL_CAMERA, make_real
from sim2real.demo.render import Camera, Segment, SceneSpec, Vehicle, ray_length_m, render
from sim2real.errors import ConfigError
from sim2real.formats import kitti, vkitti2
from sim2real.formats.images import write_gray, write_image
from sim2real.rng import keyed_rng

VK_CAMERA = dict(fx=725.0087, fy=725.0087, cx=620.5, cy=187.0, width=vkitti2.WIDTH, height=vkitti2.HEIGHT)
BASELINE_M = 0.532725
KITTI_P2 = dict(fx=721.5377, fy=721.5377, cx=609.5593, cy=172.854)
KITTI_SIZES = ((1242, 375), (1241, 376), (1224, 370), (1238, 374))
COLORS = {"Red": (170, 30, 30), "Blue": (30, 60, 160), "White": (215, 215, 210), "Black": (30, 30, 32),
          "Silver": (160, 162, 168), "Green": (40, 110, 60), "Yellow": (210, 180, 40)}
MODELS = {"Car": ["Sedan4Door", "Hatchback", "SUV"], "Van": ["Van"], "Truck": ["Truck", "BoxTruck"]}
CITYSCAPES_ID = {"Road": 7, "Terrain": 22, "Sky": 23, "Building": 11, "Tree": 21, "Vegetation": 21,
                 "Car": 26, "Van": 26, "Truck": 27, "GuardRail": 14, "Pole": 17, "TrafficSign": 20,
                 "TrafficLight": 19, "Misc": 0, "Undefined": 0}


def _segments(rng: np.random.Generator, length_m: float) -> list[Segment]:
    segs, z = [], -10.0
    while z < length_m:
        n = float(rng.uniform(8, 25))
        kind = str(rng.choice(["Building", "Building", "Tree", "Vegetation"]))
        h = float(rng.uniform(6, 16) if kind == "Building" else rng.uniform(2, 8) if kind == "Tree" else rng.uniform(0.8, 2))
        base = {"Building": (150, 140, 130), "Tree": (40, 100, 40), "Vegetation": (80, 140, 50)}[kind]
        col = tuple(int(np.clip(c * rng.uniform(0.75, 1.2), 0, 255)) for c in base)
        segs.append(Segment(z, z + n, kind, h, col))
        z += n
    return segs


@dataclass(frozen=True)
class Traffic:
    """How many vehicles a scene holds and where (params ``demo.traffic``; both sides share it).

    A real frame draws ``vehicles`` (``[low, high)``) vehicles; a synthetic scene draws as many
    plus one per ``route_spacing_m`` of the first 60 % of the road its ego drives (where
    :func:`make_scene` spreads vehicles), so its frames keep about the same density. Each vehicle is "near" with probability ``near_share``
    (ahead by ``near_m``, uniform) else "far" (``far_m``); its class is drawn with
    ``class_weights`` (Car, Van, Truck).
    """

    vehicles: tuple[int, int] = (6, 12)
    near_m: tuple[float, float] = (6.0, 70.0)
    far_m: tuple[float, float] = (70.0, 125.0)
    near_share: float = 0.75
    class_weights: tuple[int, int, int] = (6, 2, 2)
    route_spacing_m: float = 20.0

    @classmethod
    def from_params(cls, section) -> "Traffic":
        d = dict(section or {})
        known = {"vehicles", "near_m", "far_m", "near_share", "class_weights", "route_spacing_m"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"params.yaml: unknown key(s) demo.traffic.{', demo.traffic.'.join(unknown)}")
        t = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        lo, hi = t.vehicles
        if not (0 < lo < hi) or not (0 < t.near_m[0] < t.near_m[1]) or not (0 < t.far_m[0] < t.far_m[1]) \
                or not 0 <= t.near_share <= 1 or len(t.class_weights) != 3 or min(t.class_weights) < 0 \
                or t.route_spacing_m <= 0:
            raise ConfigError(f"params.yaml: demo.traffic out of range: {d}")
        return t


def make_scene(rng: np.random.Generator, n_frames: int, *, n_vehicles: int = 10, texture_seed: int = 0,
               ego_speed_m: float = 1.2, hidden_pair: bool = True, traffic: Traffic = Traffic()) -> SceneSpec:
    road_half = float(rng.uniform(5.0, 6.5))
    length = 160 + ego_speed_m * n_frames
    vehicles = []
    lanes = [-road_half + 1.6, -1.7, 1.7, road_half - 1.1, road_half + 0.6]
    labels = ["Car"] * traffic.class_weights[0] + ["Van"] * traffic.class_weights[1] + ["Truck"] * traffic.class_weights[2]
    for tid in range(n_vehicles):
        label = str(rng.choice(labels))
        lane = float(rng.choice(lanes))
        near = rng.random() < traffic.near_share
        z = float(rng.uniform(*traffic.near_m) if near else rng.uniform(*traffic.far_m)) \
            + ego_speed_m * n_frames * float(rng.uniform(0, 0.6))
        parked = abs(lane) > road_half - 1.5
        speed = 0.0 if parked else float(rng.uniform(0.6, 1.6)) * (1 if lane > 0 else -1)
        cname = str(rng.choice(list(COLORS)))
        vehicles.append(Vehicle(tid, label, lane + float(rng.uniform(-0.3, 0.3)), z, speed, COLORS[cname],
                                model=str(rng.choice(MODELS[label])), color_name=cname))
    if hidden_pair:  # a car driving right behind a truck ahead: fully occluded (number_pixels = 0)
        truck_z = float(rng.uniform(35, 50))
        vehicles.append(Vehicle(n_vehicles, "Truck", 1.7, truck_z, ego_speed_m, COLORS["White"], "BoxTruck", "White"))
        vehicles.append(Vehicle(n_vehicles + 1, "Car", 1.7, truck_z + 9.0, ego_speed_m, COLORS["Blue"], "Sedan4Door", "Blue"))
    wl, wr = road_half + float(rng.uniform(2, 5)), road_half + float(rng.uniform(2, 5))
    return SceneSpec(road_half, wl, wr, ego_speed_m, vehicles, _segments(rng, length), _segments(rng, length),
                     texture_seed=texture_seed)


def apply_fog(rgb: np.ndarray, ray_m: np.ndarray, visibility_m: float = 90.0) -> np.ndarray:
    """vKITTI2's fog variation: renderer fog, uniform grey airlight (Koschmieder's law)."""
    t = np.exp(-3.912 / visibility_m * np.where(np.isfinite(ray_m), ray_m, 1e4))[..., None]
    out = rgb.astype(np.float32) * t + np.float32(190.0) * (1 - t)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _box_rows(objs, cam: Camera) -> list[dict]:
    rows = []
    W, H = cam.width, cam.height
    for ob in objs:
        u0, v0, u1, v1 = ob["proj"]
        l, t = int(np.clip(np.floor(u0), 0, W - 1)), int(np.clip(np.floor(v0), 0, H - 1))
        r, b = int(np.clip(np.ceil(u1), 0, W - 1)), int(np.clip(np.ceil(v1), 0, H - 1))
        if r <= l or b <= t:
            continue
        full = max((u1 - u0) * (v1 - v0), 1e-6)
        clipped = (min(u1, W) - max(u0, 0)) * (min(v1, H) - max(v0, 0))
        trunc = float(np.clip(1 - clipped / full, 0, 1))
        npx = ob["visible_px"]
        rows.append(dict(trackID=ob["track_id"], left=l, right=r, top=t, bottom=b, number_pixels=npx,
                         truncation_ratio=round(trunc, 7), occupancy_ratio=round(npx / ((r - l) * (b - t)), 7),
                         label=ob["label"], alone_px=ob["alone_px"], lo=ob["lo"], hi=ob["hi"]))
    return rows


@dataclass
class SceneJob:
    root: str
    scene: str
    scene_index: int
    n_frames: int
    variations: tuple[str, ...]
    seed: int
    traffic: Traffic = Traffic()
    ego_speed_m: float = 1.2


def _scene_spec(job: SceneJob) -> SceneSpec:
    rng = keyed_rng(job.seed, "scene", job.scene_index)
    t = job.traffic
    n = int(rng.integers(*t.vehicles)) + int(job.ego_speed_m * job.n_frames * 0.6 / t.route_spacing_m)
    return make_scene(rng, job.n_frames, n_vehicles=n, texture_seed=job.scene_index + 1, ego_speed_m=job.ego_speed_m,
                      traffic=t)


def render_vkitti_frame(item: tuple[SceneJob, int]) -> list[dict]:
    """Render one frame of one scene for both cameras and all variations; return bbox/pose rows."""
    job, frame = item
    spec = _scene_spec(job)
    layout = vkitti2.Layout.from_root(Path(job.root))
    rows = []
    for cam_id in (0, 1):
        cam = Camera(**VK_CAMERA, x_offset_m=BASELINE_M * cam_id)
        fr = render(spec, cam, frame)
        ray = ray_length_m(fr.depth_m, cam)
        colors = np.array(list(vkitti2.CATEGORY_COLORS.values()), np.uint8)
        for var in job.variations:
            rgb = apply_fog(fr.rgb, ray) if var == "fog" else fr.rgb
            write_image(layout.frame_path("rgb", job.scene, var, cam_id, frame), rgb, jpeg_quality=95)
            vkitti2.write_depth(layout.frame_path("depth", job.scene, var, cam_id, frame), fr.depth_m)
            write_image(layout.frame_path("classSegmentation", job.scene, var, cam_id, frame), colors[fr.category])
            inst = fr.instance.astype(np.uint8 if fr.instance.max() < 256 else np.uint16)
            write_gray(layout.frame_path("instanceSegmentation", job.scene, var, cam_id, frame), inst)
        for r in _box_rows(fr.objects, cam):
            r.update(frame=frame, cameraID=cam_id)
            rows.append(r)
    return rows


def plant_quirks(rows: list[dict], rng: np.random.Generator, first_shadow_id: int) -> tuple[list[dict], dict[int, str]]:
    """Add vKITTI2's label quirks to one scene's bbox rows.

    - every 3rd frame: one visible box listed again, same coordinates, under another class
      (with fewer pixels, as the real files show);
    - every 4th frame: a 5x4 px sliver;
    - every 5th frame: a fully hidden object (number_pixels = 0).
    Returns all rows and {extra trackID: label} for info.txt.
    """
    out = list(rows)
    ids: dict[tuple, int] = {}
    labels: dict[int, str] = {}

    def extra_id(key: tuple, label: str) -> int:
        if key not in ids:
            ids[key] = first_shadow_id + len(ids)
            labels[ids[key]] = label
        return ids[key]

    by_frame: dict[tuple[int, int], list[dict]] = {}
    for r in rows:
        by_frame.setdefault((r["frame"], r["cameraID"]), []).append(r)
    for (frame, cam_id), frame_rows in sorted(by_frame.items()):
        visible = [r for r in frame_rows if r["number_pixels"] > 200]
        if frame % 3 == 0 and visible:
            src = visible[int(rng.integers(len(visible)))]
            other = {"Car": "Van", "Van": "Car", "Truck": "Van"}[src["label"]]
            tid = extra_id(("dup", src["trackID"], other), other)
            npx = int(src["number_pixels"] * 0.4)
            area = (src["right"] - src["left"]) * (src["bottom"] - src["top"])
            out.append({**src, "trackID": tid, "label": other, "number_pixels": npx,
                        "occupancy_ratio": round(npx / area, 7)})
        if frame % 4 == 1:
            l, t = int(rng.integers(500, 700)), int(rng.integers(170, 190))
            out.append({"frame": frame, "cameraID": cam_id, "trackID": extra_id(("sliver",), "Car"), "left": l,
                        "right": l + 5, "top": t, "bottom": t + 4, "number_pixels": 12, "truncation_ratio": 0.0,
                        "occupancy_ratio": 0.6, "label": "Car"})
        if frame % 5 == 2:
            l, t = int(rng.integers(400, 800)), int(rng.integers(160, 200))
            out.append({"frame": frame, "cameraID": cam_id, "trackID": extra_id(("hidden",), "Car"), "left": l,
                        "right": l + 40, "top": t, "bottom": t + 30, "number_pixels": 0, "truncation_ratio": 0.0,
                        "occupancy_ratio": 0.0, "label": "Car"})
    return out, labels


def write_scene_textgt(root: Path, job: SceneJob, rows: list[dict]) -> None:
    """Write bbox/info/colors/intrinsic/extrinsic/pose for every variation of one scene."""
    spec = _scene_spec(job)
    rows, extra = plant_quirks(rows, keyed_rng(job.seed, "quirks", job.scene_index), len(spec.vehicles) + 100)
    rows.sort(key=lambda r: (r["frame"], r["cameraID"], r["trackID"]))
    bbox = pd.DataFrame(rows)
    bbox["isMoving"] = bbox["trackID"].map({v.track_id: v.speed_m != 0 for v in spec.vehicles}).fillna(False).astype(bool)
    info = [(v.track_id, v.label, v.model, v.color_name) for v in spec.vehicles]
    info += [(tid, lab, "Sedan4Door" if lab == "Car" else lab, "Black") for tid, lab in sorted(extra.items())]
    info_df = pd.DataFrame(info, columns=vkitti2.INFO_COLUMNS)
    frames = range(job.n_frames)
    intr = pd.DataFrame([(f, c, VK_CAMERA["fx"], VK_CAMERA["fy"], VK_CAMERA["cx"], VK_CAMERA["cy"])
                         for f in frames for c in (0, 1)], columns=vkitti2.INTRINSIC_COLUMNS)
    ext = []
    for f in frames:
        for c in (0, 1):
            t = [-BASELINE_M * c, 0.0, -spec.ego_speed_m * f]
            ext.append([f, c, 1, 0, 0, t[0], 0, 1, 0, t[1], 0, 0, 1, t[2], 0, 0, 0, 1])
    ext_df = pd.DataFrame(ext, columns=vkitti2.EXTRINSIC_COLUMNS)
    pose = []
    for r in rows:
        lo, hi = r.get("lo"), r.get("hi")
        if lo is None:
            continue
        w, h, l = hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]
        cx, cy, cz = (lo[0] + hi[0]) / 2, hi[1], (lo[2] + hi[2]) / 2
        alpha = -np.arctan2(cx, cz)
        wx, wz = cx + BASELINE_M * r["cameraID"], cz + spec.ego_speed_m * r["frame"]
        pose.append([r["frame"], r["cameraID"], r["trackID"], alpha, w, h, l, wx, cy, wz, 0, 0, 0, cx, cy, cz, 0, 0, 0])
    pose_df = pd.DataFrame(pose, columns=vkitti2.POSE_COLUMNS)
    layout = vkitti2.Layout.from_root(root)
    for var in job.variations:
        vkitti2.write_bbox(layout.textgt(job.scene, var, "bbox"), bbox)
        vkitti2.write_info(layout.textgt(job.scene, var, "info"), info_df)
        vkitti2.write_colors(layout.textgt(job.scene, var, "colors"))
        vkitti2.write_intrinsic(layout.textgt(job.scene, var, "intrinsic"), intr)
        vkitti2.write_extrinsic(layout.textgt(job.scene, var, "extrinsic"), ext_df)
        vkitti2.write_pose(layout.textgt(job.scene, var, "pose"), pose_df.round(6))


def scene_name(index: int) -> str:
    """vKITTI2's five scene names, then Scene21, Scene22, ... (never one of the five again)."""
    n = len(vkitti2.SCENES)
    return vkitti2.SCENES[index] if index < n else f"Scene{int(vkitti2.SCENES[-1][5:]) + 1 + index - n:02d}"


# ------------------------------------------------------------------------------------ KITTI
def render_kitti_frame(item: tuple) -> None:
    """Render, degrade and write one "real" KITTI training frame with its label, calib (and semantic).

    ``item`` = (root, index, seed, seg_every[, real_camera[, traffic]]): ``real_camera`` overrides
    :data:`sim2real.demo.realism.DEFAULTS` (the hidden camera; ``palette`` goes to the renderer),
    ``traffic`` sets the vehicles (:class:`Traffic`).
    """
    root, index, seed, seg_every = item[:4]
    cam_opts = {**REAL_CAMERA, **(item[4] if len(item) > 4 and item[4] else {})}
    traffic = item[5] if len(item) > 5 else Traffic()
    rng = keyed_rng(seed, "kitti", index)
    width, height = KITTI_SIZES[int(rng.integers(len(KITTI_SIZES)))]
    cam = Camera(**KITTI_P2, width=width, height=height, height_m=1.73)
    spec = make_scene(rng, 1, n_vehicles=int(rng.integers(*traffic.vehicles)), texture_seed=1000 + index,
                      hidden_pair=False, traffic=traffic)
    spec.palette_shift = tuple(float(c) for c in cam_opts.pop("palette"))
    fr = render(spec, cam, 0)
    ray = ray_length_m(fr.depth_m, cam)
    img = make_real(fr.rgb, fr.depth_m, ray, rng, **cam_opts)
    image_id = f"{index:06d}"
    paths = kitti.training_paths(root, image_id)
    write_image(paths["image"], img)
    labels = []
    for r in _box_rows(fr.objects, cam):
        if r["number_pixels"] == 0:
            continue
        lo, hi = r["lo"], r["hi"]
        x, y, z = (lo[0] + hi[0]) / 2, hi[1], (lo[2] + hi[2]) / 2
        frac = r["number_pixels"] / max(r["alone_px"], 1)
        occluded = 0 if frac >= 0.8 else 1 if frac >= 0.4 else 2
        height_px = r["bottom"] - r["top"]
        row = dict(type=r["label"], truncated=round(r["truncation_ratio"], 2), occluded=occluded,
                   alpha=-np.arctan2(x, z), left=r["left"], top=r["top"], right=r["right"], bottom=r["bottom"],
                   h=hi[1] - lo[1], w=hi[0] - lo[0], l=hi[2] - lo[2], x=x, y=y, z=z, rotation_y=0.0)
        if height_px < 18:  # annotators mark tiny far objects as DontCare
            row.update(type="DontCare", truncated=-1, occluded=-1, alpha=-10, h=-1, w=-1, l=-1, x=-1000,
                       y=-1000, z=-1000, rotation_y=-10)
        labels.append(row)
    kitti.write_label(paths["label"], pd.DataFrame(labels, columns=kitti.LABEL_COLUMNS))
    P2 = np.array([[cam.fx, 0, cam.cx, 44.857], [0, cam.fy, cam.cy, 0.2163], [0, 0, 1, 0.0027]])
    P0 = np.array([[cam.fx, 0, cam.cx, 0], [0, cam.fy, cam.cy, 0], [0, 0, 1, 0]])
    P1 = P0.copy(); P1[0, 3] = -387.57
    P3 = P2.copy(); P3[0, 3] = -339.52
    velo = np.array([[0, -1, 0, -0.0041], [0, 0, -1, -0.0763], [1, 0, 0, -0.2718]], float)
    imu = np.array([[1, 0, 0, -0.8087], [0, 1, 0, 0.3196], [0, 0, 1, -0.7997]], float)
    kitti.write_calib(paths["calib"], {"P0": P0, "P1": P1, "P2": P2, "P3": P3, "R0_rect": np.eye(3),
                                       "Tr_velo_to_cam": velo, "Tr_imu_to_velo": imu})
    if seg_every and index % seg_every == 0:
        lut = np.array([CITYSCAPES_ID[name] for name in vkitti2.CATEGORY_COLORS], np.uint8)
        write_gray(paths["semantic"], lut[fr.category])
