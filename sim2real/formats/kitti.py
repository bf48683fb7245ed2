"""KITTI 2D/3D object benchmark on-disk format: labels, results, calibration, layout.

Label line (15 fields; result files add a 16th, ``score``)::

    type truncated occluded alpha left top right bottom h w l x y z rotation_y [score]

Boxes are 0-based float pixels (left, top, right, bottom). ``occluded``: 0 fully visible,
1 partly, 2 largely occluded, 3 unknown. Images vary in size: read each.

References: Geiger, Lenz, Urtasun, CVPR 2012; the KITTI object devkit (readme.txt).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sim2real.errors import DataError
from sim2real.formats.table import parse_table, read_lines

LABEL_COLUMNS = ["type", "truncated", "occluded", "alpha", "left", "top", "right", "bottom",
                 "h", "w", "l", "x", "y", "z", "rotation_y"]
RESULT_COLUMNS = LABEL_COLUMNS + ["score"]
TYPES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare")
_KINDS = {c: "float" for c in RESULT_COLUMNS}
_KINDS.update(type="str", occluded="int")
CALIB_KEYS = ("P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam", "Tr_imu_to_velo")


def read_label(path: str | Path, with_lines: bool = False) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
    """Read a KITTI label or result file; ``score`` column present only when the file has it (an
    empty file has the 15 label columns). ``with_lines``: also return each row's 1-based file line."""
    df, lines = parse_table(path, RESULT_COLUMNS, _KINDS, header=False, optional_last=["score"], with_lines=True)
    bad = ~df["type"].isin(TYPES)
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        raise DataError(path, f"unknown object type '{df['type'].iloc[i]}'", line=int(lines[i]))
    inverted = (df["right"] < df["left"]) | (df["bottom"] < df["top"])
    if inverted.any():
        i = int(np.argmax(inverted.to_numpy()))
        raise DataError(path, "box with right < left or bottom < top", line=int(lines[i]))
    return (df, lines) if with_lines else df


def check_boxes_inside(df: pd.DataFrame, lines, width: int, height: int, path: str | Path) -> None:
    """DataError naming the file and line of the first box outside the ``width`` x ``height`` image.

    KITTI boxes are float pixel coordinates with the image spanning [0, width] x [0, height]."""
    bad = ((df["left"] < 0) | (df["top"] < 0) | (df["right"] > width) | (df["bottom"] > height)).to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        r = df.iloc[i]
        raise DataError(path, f"box (left={r['left']:g}, top={r['top']:g}, right={r['right']:g}, bottom={r['bottom']:g}) "
                              f"outside the {width}x{height} image", line=int(np.asarray(lines)[i]))


PLACEHOLDERS = (-1.0, -10.0, -1000.0)


def _fmt(v, placeholder: bool = False) -> str:
    """2 decimals like the official files; DontCare placeholders (-1, -10, -1000) as integers."""
    if placeholder and float(v) in PLACEHOLDERS:
        return str(int(v))
    return f"{float(v):.2f}"


def format_label(df: pd.DataFrame) -> str:
    cols = RESULT_COLUMNS if "score" in df.columns else LABEL_COLUMNS
    lines = []
    for row in df[cols].itertuples(index=False):
        d = row._asdict()
        dc = d["type"] == "DontCare"
        fields = [str(d["type"]), _fmt(d["truncated"], dc), str(int(d["occluded"])), _fmt(d["alpha"], dc)]
        fields += [_fmt(d[c]) for c in ("left", "top", "right", "bottom")]
        fields += [_fmt(d[c], dc) for c in ("h", "w", "l", "x", "y", "z", "rotation_y")]
        if "score" in cols:
            fields.append(f"{float(d['score']):.4f}")
        lines.append(" ".join(fields))
    return "".join(line + "\n" for line in lines)


def write_label(path: str | Path, df: pd.DataFrame) -> None:
    """Write a label/result file (2 decimals like the official files; score 4 decimals)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_label(df))


def read_calib(path: str | Path) -> dict[str, np.ndarray]:
    """Read a calib file: ``KEY: v v v ...`` -> {KEY: array} (P* 3x4, R0_rect 3x3, Tr_* 3x4)."""
    out = {}
    for i, text in enumerate(read_lines(path), start=1):
        if not text.strip():
            continue
        key, sep, rest = text.partition(":")
        if not sep:
            raise DataError(path, "expected 'KEY: values'", line=i)
        try:
            vals = np.array([float(v) for v in rest.split()], dtype=np.float64)
        except ValueError:
            raise DataError(path, f"non-numeric value in {key}", line=i) from None
        shape = (3, 3) if key == "R0_rect" else (3, 4)
        if vals.size != shape[0] * shape[1]:
            raise DataError(path, f"{key}: expected {shape[0] * shape[1]} values, got {vals.size}", line=i)
        out[key] = vals.reshape(shape)
    missing = [k for k in ("P2",) if k not in out]
    if missing:
        raise DataError(path, f"missing {', '.join(missing)}")
    return out


def write_calib(path: str | Path, calib: dict[str, np.ndarray]) -> None:
    lines = [f"{k}: " + " ".join(f"{v:.12e}" for v in np.asarray(calib[k]).ravel()) for k in CALIB_KEYS if k in calib]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n")


def training_paths(root: str | Path, image_id: str) -> dict[str, Path]:
    root = Path(root) / "training"
    return {"image": root / "image_2" / f"{image_id}.png", "label": root / "label_2" / f"{image_id}.txt",
            "calib": root / "calib" / f"{image_id}.txt", "semantic": root / "semantic" / f"{image_id}.png"}


def list_training_ids(root: str | Path) -> list[str]:
    d = Path(root) / "training" / "image_2"
    if not d.is_dir():
        raise DataError(d, "KITTI training/image_2 folder not found (set data.kitti_root)")
    return sorted(p.stem for p in d.glob("*.png"))
