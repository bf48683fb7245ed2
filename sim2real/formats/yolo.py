"""ultralytics YOLO dataset format: ``labels/<split>/x.txt`` rows ``cls cx cy w h`` (normalised)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import yaml

from sim2real.errors import DataError
from sim2real.formats.table import parse_table


def boxes_to_yolo(left, top, right, bottom, width: int, height: int) -> np.ndarray:
    """Pixel boxes (x1, y1, x2, y2) -> (N, 4) normalised cx, cy, w, h."""
    l, t, r, b = (np.asarray(v, dtype=np.float64) for v in (left, top, right, bottom))
    return np.stack([(l + r) / 2 / width, (t + b) / 2 / height, (r - l) / width, (b - t) / height], axis=1)


def yolo_to_boxes(cxcywh: np.ndarray, width: int, height: int) -> np.ndarray:
    cx, cy, w, h = np.asarray(cxcywh, dtype=np.float64).T
    return np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], axis=1)


def format_labels(class_ids: Sequence[int], cxcywh: np.ndarray) -> str:
    rows = [f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for c, (x, y, w, h) in zip(class_ids, np.asarray(cxcywh).reshape(-1, 4))]
    return "".join(r + "\n" for r in rows)


def write_labels(path: str | Path, class_ids: Sequence[int], cxcywh: np.ndarray) -> None:
    """Write one YOLO label file (an empty file = background image)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_labels(class_ids, cxcywh))


def read_labels(path: str | Path) -> pd.DataFrame:
    """Read a YOLO label file into columns cls, cx, cy, w, h; a missing file is background."""
    path = Path(path)
    cols = ["cls", "cx", "cy", "w", "h"]
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "cls" else "float64") for c in cols})
    df = parse_table(path, cols, {"cls": "int", "cx": "float", "cy": "float", "w": "float", "h": "float"}, header=False)
    vals = df[["cx", "cy", "w", "h"]].to_numpy()
    bad = ((vals < 0) | (vals > 1)).any(axis=1)
    if bad.any():
        raise DataError(path, "normalised coordinate outside [0, 1]", line=int(np.argmax(bad)) + 1)
    return df


def write_data_yaml(path: str | Path, root: str | Path, names: Sequence[str], train: str = "images/train",
                    val: str = "images/val", test: str | None = None) -> None:
    """Write an ultralytics ``data.yaml`` (``path`` absolute so it works from any cwd)."""
    data = {"path": str(Path(root).resolve()), "train": train, "val": val,
            "names": {i: n for i, n in enumerate(names)}}
    if test:
        data["test"] = test
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
