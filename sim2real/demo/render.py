"""A small ray-cast road world: ground, road, buildings/vegetation walls, sky and box-shaped
vehicles, seen through a pinhole camera. Produces RGB, z-depth, class and instance maps that are
exactly consistent with each other (the same rays make all four).

Camera coordinates as in KITTI/vKITTI2: x right, y down, z forward; the ground plane is
y = +camera_height_m. Everything is vectorised numpy; one 1242x375 frame takes ~0.1 s.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim2real.formats.vkitti2 import CATEGORY_COLORS

CATEGORY_INDEX = {name: i for i, name in enumerate(CATEGORY_COLORS)}
FAR_M = 600.0  # beyond this, rays count as sky (vKITTI2 clips depth at 655.35 m)

SIZES_M = {  # width, height, length
    "Car": (1.8, 1.5, 4.2),
    "Van": (2.0, 2.2, 5.0),
    "Truck": (2.5, 3.3, 8.5),
}


@dataclass(frozen=True)
class Camera:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    height_m: float = 1.65
    x_offset_m: float = 0.0  # baseline shift (Camera_1 is to the right of Camera_0)


@dataclass
class Vehicle:
    track_id: int
    label: str
    x_m: float            # lateral centre, world frame
    z_m: float            # longitudinal centre at frame 0, world frame
    speed_m: float        # metres per frame along +z
    color: tuple[int, int, int]
    model: str = "Sedan4Door"
    color_name: str = "Red"

    @property
    def size_m(self) -> tuple[float, float, float]:
        return SIZES_M[self.label]

    def z_at(self, frame: int) -> float:
        return self.z_m + self.speed_m * frame


@dataclass
class Segment:
    z0_m: float
    z1_m: float
    kind: str             # Building | Tree | Vegetation
    height_m: float
    color: tuple[int, int, int]


@dataclass
class SceneSpec:
    road_half_m: float
    wall_left_m: float
    wall_right_m: float
    ego_speed_m: float
    vehicles: list[Vehicle]
    left: list[Segment]
    right: list[Segment]
    sky_top: tuple[int, int, int] = (110, 160, 225)
    sky_bottom: tuple[int, int, int] = (200, 220, 240)
    texture_seed: int = 0
    palette_shift: tuple[float, float, float] = (1.0, 1.0, 1.0)
    extras: dict = field(default_factory=dict)


def _hash01(a: np.ndarray, b: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic per-cell noise in [0, 1) from integer cell coordinates (a, b)."""
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    b = np.nan_to_num(b, nan=0.0, posinf=0.0, neginf=0.0)
    h = (a.astype(np.int64) * 73856093) ^ (b.astype(np.int64) * 19349663) ^ (seed * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).astype(np.float32) / 65536.0


def _slab(lo: float, hi: float, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        a = lo / d
        b = hi / d
    tmin = np.minimum(a, b)
    tmax = np.maximum(a, b)
    zero = d == 0
    if zero.any():
        inside = lo <= 0 <= hi
        tmin = np.where(zero, -np.inf if inside else np.inf, tmin)
        tmax = np.where(zero, np.inf if inside else -np.inf, tmax)
    return tmin, tmax


def vehicle_box_cam(v: Vehicle, frame: int, spec: SceneSpec, cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned box (lo, hi) of a vehicle in camera coordinates at ``frame``."""
    w, h, l = v.size_m
    xc = v.x_m - cam.x_offset_m
    zc = v.z_at(frame) - spec.ego_speed_m * frame
    lo = np.array([xc - w / 2, cam.height_m - h, zc - l / 2])
    hi = np.array([xc + w / 2, cam.height_m, zc + l / 2])
    return lo, hi


def project_box(lo: np.ndarray, hi: np.ndarray, cam: Camera) -> tuple[float, float, float, float] | None:
    """Unclipped 2D extent (u0, v0, u1, v1) of a 3D box, or None when it is behind the camera."""
    if lo[2] <= 0.5:
        return None
    xs = np.array([lo[0], hi[0]]); ys = np.array([lo[1], hi[1]]); zs = np.array([lo[2], hi[2]])
    X, Y, Z = np.meshgrid(xs, ys, zs, indexing="ij")
    u = cam.fx * X / Z + cam.cx
    v = cam.fy * Y / Z + cam.cy
    return float(u.min()), float(v.min()), float(u.max()), float(v.max())


@dataclass
class Frame:
    rgb: np.ndarray          # (H, W, 3) uint8, clean
    depth_m: np.ndarray      # (H, W) float32, +inf for sky
    category: np.ndarray     # (H, W) uint8 index into CATEGORY_COLORS
    instance: np.ndarray     # (H, W) int32, trackID + 1, 0 = none
    objects: list[dict]      # per vehicle in view: projection, pixel counts


def render(spec: SceneSpec, cam: Camera, frame: int) -> Frame:
    H, W = cam.height, cam.width
    u = np.arange(W, dtype=np.float32)[None, :] + 0.5
    vv = np.arange(H, dtype=np.float32)[:, None] + 0.5
    dx = np.broadcast_to((u - cam.cx) / cam.fx, (H, W))
    dy = np.broadcast_to((vv - cam.cy) / cam.fy, (H, W))
    ego_z = spec.ego_speed_m * frame
    seed = spec.texture_seed

    depth = np.full((H, W), np.inf, dtype=np.float32)
    cat = np.full((H, W), CATEGORY_INDEX["Sky"], dtype=np.uint8)
    rgb = np.zeros((H, W, 3), dtype=np.float32)

    # sky gradient
    tsky = np.clip(vv / max(cam.cy, 1.0), 0, 1)
    sky = (np.array(spec.sky_top, np.float32) * (1 - tsky[..., None]) + np.array(spec.sky_bottom, np.float32) * tsky[..., None])
    rgb[:] = np.broadcast_to(sky, (H, W, 3))

    # ground
    with np.errstate(divide="ignore"):
        zg = np.where(dy > 1e-6, cam.height_m / np.maximum(dy, 1e-6), np.inf).astype(np.float32)
    ground = zg < FAR_M
    zg_f = np.where(ground, zg, 0.0).astype(np.float32)
    xg = dx * zg_f + cam.x_offset_m
    zw = zg_f + ego_z
    road = ground & (np.abs(xg) < spec.road_half_m)
    terrain = ground & ~road
    n = _hash01(np.floor(xg * 6), np.floor(zw * 6), seed)
    asphalt = 95 + 30 * n
    rgb[road] = np.stack([asphalt, asphalt, asphalt * 1.03], -1)[road]
    dash = road & (np.abs(np.abs(xg) - spec.road_half_m / 2) < 0.08) & ((np.floor(zw / 3) % 2) == 0)
    dash |= road & (np.abs(np.abs(xg) - (spec.road_half_m - 0.25)) < 0.07)
    rgb[dash] = 225
    grass = np.stack([60 + 40 * n, 110 + 50 * n, 40 + 20 * n], -1)
    rgb[terrain] = grass[terrain]
    depth[ground] = zg[ground]
    cat[road] = CATEGORY_INDEX["Road"]
    cat[terrain] = CATEGORY_INDEX["Terrain"]

    # side walls: buildings and vegetation segments
    for side, wall_x, segments in ((-1, -spec.wall_left_m, spec.left), (1, spec.wall_right_m, spec.right)):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (wall_x - cam.x_offset_m) / dx
        valid = (np.sign(dx) == side) & np.isfinite(t) & (t > 0) & (t < depth)
        y = dy * t
        zwall = t + ego_z
        for seg in segments:
            m = valid & (zwall >= seg.z0_m) & (zwall < seg.z1_m) & (y <= cam.height_m) & (y >= cam.height_m - seg.height_m)
            if not m.any():
                continue
            base = np.array(seg.color, np.float32)
            nn = _hash01(np.floor(zwall * 4), np.floor(y * 4), seed + 1)[m]
            col = base[None, :] * (0.8 + 0.4 * nn[:, None])
            if seg.kind == "Building":
                win = ((np.floor(zwall[m] / 1.5) % 2) == 0) & ((np.floor((cam.height_m - y[m]) / 1.2) % 2) == 1)
                col[win] = np.array([50, 60, 75], np.float32) * (0.8 + 0.4 * nn[win, None])
            rgb[m] = col
            depth[m] = t[m]
            cat[m] = CATEGORY_INDEX[seg.kind]
            valid &= ~m

    instance = np.zeros((H, W), dtype=np.int32)
    objects = []
    for v in spec.vehicles:
        lo, hi = vehicle_box_cam(v, frame, spec, cam)
        proj = project_box(lo, hi, cam)
        if proj is None or lo[2] > FAR_M:
            continue
        u0, v0, u1, v1 = proj
        c0, r0 = max(int(np.floor(u0)), 0), max(int(np.floor(v0)), 0)
        c1, r1 = min(int(np.ceil(u1)), W), min(int(np.ceil(v1)), H)
        if c1 <= c0 or r1 <= r0:
            continue
        sdx, sdy = dx[r0:r1, c0:c1], dy[r0:r1, c0:c1]
        tx0, tx1 = _slab(lo[0], hi[0], sdx)
        ty0, ty1 = _slab(lo[1], hi[1], sdy)
        tz0, tz1 = lo[2], hi[2]
        near = np.maximum(np.maximum(tx0, ty0), tz0)
        far = np.minimum(np.minimum(tx1, ty1), tz1)
        hit = (near <= far) & (near > 0)
        alone = int(hit.sum())
        face = np.argmax(np.stack([tx0, ty0, np.full_like(tx0, tz0)]), axis=0)
        sub_depth = depth[r0:r1, c0:c1]
        vis = hit & (near < sub_depth)
        rh = (cam.height_m - sdy * near) / (hi[1] - lo[1] + 1e-9)
        body = np.array(v.color, np.float32)
        shade = np.select([face == 0, face == 1], [0.72, 1.12], 1.0)[..., None]
        col = body[None, None, :] * shade
        glass = (rh > 0.55) & (rh < 0.88) & (face != 1)
        col = np.where(glass[..., None], np.array([35, 45, 60], np.float32) * shade, col)
        lowband = (rh < 0.22) & (face != 1)
        col = np.where(lowband[..., None], np.array([25, 25, 28], np.float32), col)
        if v.label != "Car":
            stripe = (np.abs(rh - 0.4) < 0.03) & (face != 1)
            col = np.where(stripe[..., None], np.array([230, 230, 230], np.float32), col)
        sub_rgb = rgb[r0:r1, c0:c1]
        sub_rgb[vis] = col[vis]
        sub_depth[vis] = near[vis]
        cat[r0:r1, c0:c1][vis] = CATEGORY_INDEX[v.label]
        instance[r0:r1, c0:c1][vis] = v.track_id + 1
        objects.append({"track_id": v.track_id, "label": v.label, "proj": proj, "alone_px": alone,
                        "lo": lo, "hi": hi})
    for ob in objects:
        ob["visible_px"] = int((instance == ob["track_id"] + 1).sum())

    shift = np.array(spec.palette_shift, np.float32)
    out = np.clip(np.round(rgb * shift), 0, 255).astype(np.uint8)
    return Frame(out, depth, cat, instance, objects)


def ray_length_m(depth_m: np.ndarray, cam: Camera) -> np.ndarray:
    """Distance along each pixel's ray from z-depth: l = z * sqrt(1 + x'^2 + y'^2)."""
    H, W = depth_m.shape
    u = (np.arange(W, dtype=np.float32)[None, :] + 0.5 - cam.cx) / cam.fx
    v = (np.arange(H, dtype=np.float32)[:, None] + 0.5 - cam.cy) / cam.fy
    return depth_m * np.sqrt(1 + u * u + v * v)
