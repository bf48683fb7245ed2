"""Virtual KITTI 2 (v2.0.3) on-disk format: exact readers and writers.

Layout (one root holding the extracted archives, or one root per modality)::

    vkitti_2.0.3_rgb/SceneXX/<variation>/frames/rgb/Camera_N/rgb_%05d.jpg
    vkitti_2.0.3_depth/SceneXX/<variation>/frames/depth/Camera_N/depth_%05d.png
    vkitti_2.0.3_classSegmentation/SceneXX/<variation>/frames/classSegmentation/Camera_N/classgt_%05d.png
    vkitti_2.0.3_instanceSegmentation/SceneXX/<variation>/frames/instanceSegmentation/Camera_N/instancegt_%05d.png
    vkitti_2.0.3_textgt/SceneXX/<variation>/{bbox,colors,extrinsic,info,intrinsic,pose}.txt

Folder names are matched case-insensitively (the official text and the files disagree on the
case of the segmentation folders). Depth is 16-bit PNG z-depth in centimetres; 65535 is the
clipped far plane (sky), which :func:`read_depth_m` returns as ``+inf`` metres.

References: Cabon, Murray, Humenberger, "Virtual KITTI 2", arXiv:2001.10773, and the
dataset's README.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from sim2real.errors import DataError
from sim2real.formats.images import read_gray_any, read_rgb
from sim2real.formats.table import parse_table, write_table

VERSION = "2.0.3"
MODALITIES = ("rgb", "depth", "classSegmentation", "instanceSegmentation", "textgt")
FRAME_FILE = {
    "rgb": "rgb_{:05d}.jpg",
    "depth": "depth_{:05d}.png",
    "classSegmentation": "classgt_{:05d}.png",
    "instanceSegmentation": "instancegt_{:05d}.png",
}
SCENES = ("Scene01", "Scene02", "Scene06", "Scene18", "Scene20")
VARIATIONS = ("15-deg-left", "15-deg-right", "30-deg-left", "30-deg-right", "clone", "fog",
              "morning", "overcast", "rain", "sunset")
WIDTH, HEIGHT = 1242, 375
DEPTH_FAR_CM = 65535
LABELS = ("Car", "Van", "Truck")

BBOX_COLUMNS = ["frame", "cameraID", "trackID", "left", "right", "top", "bottom", "number_pixels",
                "truncation_ratio", "occupancy_ratio", "isMoving"]
BBOX_KINDS = {"frame": "int", "cameraID": "int", "trackID": "int", "left": "int", "right": "int",
              "top": "int", "bottom": "int", "number_pixels": "int", "truncation_ratio": "float",
              "occupancy_ratio": "float", "isMoving": "bool"}
INFO_COLUMNS = ["trackID", "label", "model", "color"]
INFO_KINDS = {"trackID": "int", "label": "str", "model": "str", "color": "str"}
INTRINSIC_COLUMNS = ["frame", "cameraID", "K[0,0]", "K[1,1]", "K[0,2]", "K[1,2]"]
# extrinsic header as published: "frame cameraID r1,1 r1,2 r1,3 t1 r2,1 ... t3 0 0 0 1"
EXTRINSIC_HEADER = ["frame", "cameraID", "r1,1", "r1,2", "r1,3", "t1", "r2,1", "r2,2", "r2,3", "t2",
                    "r3,1", "r3,2", "r3,3", "t3", "0", "0", "0", "1"]
# DataFrame names for the same columns: the constant last row "0 0 0 1" gets unique names
EXTRINSIC_COLUMNS = EXTRINSIC_HEADER[:14] + ["m4,1", "m4,2", "m4,3", "m4,4"]
POSE_COLUMNS = ["frame", "cameraID", "trackID", "alpha", "width", "height", "length",
                "world_space_X", "world_space_Y", "world_space_Z", "rotation_world_space_y",
                "rotation_world_space_x", "rotation_world_space_z", "camera_space_X", "camera_space_Y",
                "camera_space_Z", "rotation_camera_space_y", "rotation_camera_space_x",
                "rotation_camera_space_z"]
COLORS_COLUMNS = ["Category", "r", "g", "b"]

# colors.txt as shipped with every scene/variation (category -> RGB)
CATEGORY_COLORS: dict[str, tuple[int, int, int]] = {
    "Terrain": (210, 0, 200), "Sky": (90, 200, 255), "Tree": (0, 199, 0), "Vegetation": (90, 240, 0),
    "Building": (140, 140, 140), "Road": (100, 60, 100), "GuardRail": (250, 100, 255),
    "TrafficSign": (255, 255, 0), "TrafficLight": (200, 200, 0), "Pole": (255, 130, 0),
    "Misc": (80, 80, 80), "Truck": (160, 60, 60), "Car": (255, 127, 80), "Van": (0, 139, 139),
    "Undefined": (0, 0, 0),
}


# ---------------------------------------------------------------------------- text ground truth
def read_bbox(path: str | Path, with_lines: bool = False) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
    """Read ``bbox.txt``: one row per (frame, camera, track) with exactly the file's columns.

    Box order in the file is left, right, top, bottom (integer pixels, inclusive); both cameras
    are interleaved in one file. ``isMoving`` is parsed from True/False or 1/0 into bool.
    ``with_lines``: also return each row's 1-based line in the file (blank lines counted).
    """
    return parse_table(path, BBOX_COLUMNS, BBOX_KINDS, with_lines=with_lines)


def write_bbox(path: str | Path, df: pd.DataFrame) -> None:
    fmt = {"truncation_ratio": lambda v: f"{v:.7g}", "occupancy_ratio": lambda v: f"{v:.7g}"}
    write_table(path, df, BBOX_COLUMNS, formatters=fmt)


def read_info(path: str | Path) -> pd.DataFrame:
    """Read ``info.txt`` (``trackID label model color``); labels must be Car, Van or Truck."""
    df, lines = parse_table(path, INFO_COLUMNS, INFO_KINDS, with_lines=True)
    bad = ~df["label"].isin(LABELS)
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        raise DataError(path, f"unknown label '{df['label'].iloc[i]}' (expected one of {', '.join(LABELS)})", line=int(lines[i]))
    dup = df["trackID"].duplicated()
    if dup.any():
        i = int(np.argmax(dup.to_numpy()))
        raise DataError(path, f"trackID {df['trackID'].iloc[i]} listed twice", line=int(lines[i]))
    return df


def write_info(path: str | Path, df: pd.DataFrame) -> None:
    write_table(path, df, INFO_COLUMNS)


def read_intrinsic(path: str | Path) -> pd.DataFrame:
    """Read ``intrinsic.txt``: ``frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]`` (fx fy cx cy, px)."""
    kinds = {c: "float" for c in INTRINSIC_COLUMNS}
    kinds.update(frame="int", cameraID="int")
    return parse_table(path, INTRINSIC_COLUMNS, kinds)


def write_intrinsic(path: str | Path, df: pd.DataFrame) -> None:
    write_table(path, df, INTRINSIC_COLUMNS)


def read_extrinsic(path: str | Path) -> pd.DataFrame:
    """Read ``extrinsic.txt``: world->camera 4x4 matrices, row-major, one per frame and camera.

    The header's last four tokens (``0 0 0 1``) repeat, so the DataFrame names them m4,1..m4,4.
    """
    kinds = {c: "float" for c in EXTRINSIC_COLUMNS}
    kinds.update(frame="int", cameraID="int")
    return parse_table(path, EXTRINSIC_COLUMNS, kinds, header_tokens=EXTRINSIC_HEADER)


def write_extrinsic(path: str | Path, df: pd.DataFrame) -> None:
    write_table(path, df, EXTRINSIC_COLUMNS, header_tokens=EXTRINSIC_HEADER)


def read_pose(path: str | Path) -> pd.DataFrame:
    """Read ``pose.txt`` (19 columns, see the dataset README)."""
    kinds = {c: "float" for c in POSE_COLUMNS}
    kinds.update(frame="int", cameraID="int", trackID="int")
    return parse_table(path, POSE_COLUMNS, kinds)


def write_pose(path: str | Path, df: pd.DataFrame) -> None:
    write_table(path, df, POSE_COLUMNS)


def read_colors(path: str | Path) -> dict[str, tuple[int, int, int]]:
    """Read ``colors.txt`` (``Category r g b``) into {category: (r, g, b)}."""
    df = parse_table(path, COLORS_COLUMNS, {"Category": "str", "r": "int", "g": "int", "b": "int"})
    return {row.Category: (int(row.r), int(row.g), int(row.b)) for row in df.itertuples()}


def write_colors(path: str | Path, colors: Mapping[str, tuple[int, int, int]] = CATEGORY_COLORS) -> None:
    df = pd.DataFrame([(k, *v) for k, v in colors.items()], columns=COLORS_COLUMNS)
    write_table(path, df, COLORS_COLUMNS)


def validate_boxes(df: pd.DataFrame, width, height, path, lines) -> None:
    """Raise DataError for the first box that lies outside its image or is inverted.

    ``df`` is :func:`read_bbox` output (or rows of it); ``width``/``height`` are one image size
    or arrays aligned with ``df`` (one per row: sizes are read per image, per camera); ``lines``
    the 1-based file line of each row of ``df`` (``read_bbox(path, with_lines=True)``), named in the error.
    """
    w = np.broadcast_to(np.asarray(width), (len(df),))
    h = np.broadcast_to(np.asarray(height), (len(df),))
    l, r, t, b = (df[c].to_numpy() for c in ("left", "right", "top", "bottom"))
    bad = (l < 0) | (t < 0) | (r > w - 1) | (b > h - 1) | (r < l) | (b < t)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(path, f"box (left={l[i]}, right={r[i]}, top={t[i]}, bottom={b[i]}) outside the "
                              f"{w[i]}x{h[i]} image or inverted", line=int(np.asarray(lines)[i]))


# ---------------------------------------------------------------------------- images
def read_depth_m(path: str | Path) -> np.ndarray:
    """Read a depth PNG as float32 (H, W) z-depth in metres; the far plane (65535 cm) -> +inf."""
    raw = read_gray_any(path)
    if raw.ndim != 2 or raw.dtype != np.uint16:
        raise DataError(path, f"depth must be a 16-bit PNG in centimetres, got {raw.dtype}")
    depth = raw.astype(np.float32) / 100.0
    depth[raw == DEPTH_FAR_CM] = np.inf
    return depth


def write_depth(path: str | Path, depth_m: np.ndarray) -> None:
    """Write z-depth in metres as 16-bit centimetres; inf and >= 655.35 m -> 65535."""
    from sim2real.formats.images import write_gray
    cm = np.where(np.isfinite(depth_m), np.round(depth_m * 100.0), DEPTH_FAR_CM)
    write_gray(path, np.clip(cm, 0, DEPTH_FAR_CM).astype(np.uint16))


def read_class_seg(path: str | Path, colors: Mapping[str, tuple[int, int, int]] = CATEGORY_COLORS) -> np.ndarray:
    """Read a classgt PNG into an index map (H, W) uint8: index into ``list(colors)``.

    Pixels whose colour is not in ``colors`` raise DataError.
    """
    rgb = read_rgb(path)
    names = list(colors)
    key = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    table = np.array([(r << 16) | (g << 8) | b for r, g, b in colors.values()], dtype=np.int32)
    order = np.argsort(table)
    pos = np.searchsorted(table[order], key)
    pos = np.clip(pos, 0, len(table) - 1)
    found = table[order][pos] == key
    if not found.all():
        y, x = np.argwhere(~found)[0]
        raise DataError(path, f"pixel ({x}, {y}) has colour {tuple(int(c) for c in rgb[y, x])} not listed in colors.txt")
    idx = order[pos].astype(np.uint8)
    assert len(names) < 256
    return idx


def category_index(name: str, colors: Mapping[str, tuple[int, int, int]] = CATEGORY_COLORS) -> int:
    return list(colors).index(name)


def read_instance_seg(path: str | Path) -> np.ndarray:
    """Read an instancegt PNG as int32 (H, W): trackID + 1 per pixel, 0 = no instance."""
    return read_gray_any(path).astype(np.int32)


# ---------------------------------------------------------------------------- layout
def _child_ci(parent: Path, name: str) -> Path:
    """parent/name, matching ``name`` case-insensitively; the exact-case path if none exists."""
    exact = parent / name
    if exact.exists():
        return exact
    if parent.is_dir():
        low = name.lower()
        for child in parent.iterdir():
            if child.name.lower() == low:
                return child
    return exact


@dataclass(frozen=True)
class Layout:
    """Where each vKITTI2 modality lives. ``roots`` maps modality -> folder holding SceneXX/."""

    roots: Mapping[str, Path]

    @classmethod
    def from_root(cls, root: str | Path | Mapping[str, str]) -> "Layout":
        """One folder holding ``vkitti_2.0.3_<modality>/`` folders, or {modality: folder}."""
        if isinstance(root, Mapping):
            return cls({m: Path(p) for m, p in root.items()})
        root = Path(root)
        if not root.is_dir():
            raise DataError(root, "vKITTI2 root folder not found (set data.vkitti2_root)")
        return cls({m: _child_ci(root, f"vkitti_{VERSION}_{m}") for m in MODALITIES})

    def variation_dir(self, modality: str, scene: str, variation: str) -> Path:
        return _child_ci(_child_ci(self.roots[modality], scene), variation)

    def frame_path(self, modality: str, scene: str, variation: str, camera: int, frame: int) -> Path:
        d = _child_ci(_child_ci(self.variation_dir(modality, scene, variation), "frames"), modality)
        return _child_ci(d, f"Camera_{camera}") / FRAME_FILE[modality].format(frame)

    def frame_dir(self, modality: str, scene: str, variation: str, camera: int) -> Path:
        return self.frame_path(modality, scene, variation, camera, 0).parent

    def textgt(self, scene: str, variation: str, name: str) -> Path:
        return self.variation_dir("textgt", scene, variation) / f"{name}.txt"

    def frames(self, scene: str, variation: str, camera: int) -> list[int]:
        """Frame numbers with an RGB file, sorted."""
        d = self.frame_dir("rgb", scene, variation, camera)
        if not d.is_dir():
            raise DataError(d, "RGB frame folder not found")
        out = []
        for p in d.iterdir():
            stem = p.stem
            if p.suffix.lower() == ".jpg" and stem.startswith("rgb_") and stem[4:].isdigit():
                out.append(int(stem[4:]))
        return sorted(out)
