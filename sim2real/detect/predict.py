"""Inference and ultralytics validation of a trained detector on the real-KITTI val split.

* :func:`predict_kitti` writes one KITTI *result* file per image (``<image_id>.txt``, possibly
  empty): ``type -1 -1 -10 left top right bottom -1 -1 -1 -1000 -1000 -1000 -10 score``, the
  2D-only convention of the KITTI devkit, with the class names of the model (Car, Van, Truck).
* :func:`val_metrics` runs ultralytics ``val`` (COCO-style mAP50 and mAP50-95, all classes and
  per class). This is not the KITTI metric (see :mod:`sim2real.metrics.kitti_ap`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from sim2real.formats import kitti


def detections_frame(xyxy: np.ndarray, cls: np.ndarray, conf: np.ndarray, names: Sequence[str] | dict) -> pd.DataFrame:
    """(N, 4) pixel boxes, class ids and scores -> a KITTI result table (2D fields only)."""
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    n = len(xyxy)
    df = pd.DataFrame({
        "type": [str(names[int(c)]) for c in np.asarray(cls).reshape(-1)],
        "truncated": np.full(n, -1.0), "occluded": np.full(n, -1, dtype=np.int64), "alpha": np.full(n, -10.0),
        "left": xyxy[:, 0], "top": xyxy[:, 1], "right": xyxy[:, 2], "bottom": xyxy[:, 3],
        "h": -1.0, "w": -1.0, "l": -1.0, "x": -1000.0, "y": -1000.0, "z": -1000.0, "rotation_y": -10.0,
        "score": np.asarray(conf, dtype=np.float64).reshape(-1),
    })
    return df[kitti.RESULT_COLUMNS]


def predict_kitti(model, images: Sequence[Path], out_dir: Path, *, imgsz: int, conf: float, iou: float,
                  max_det: int, device: str, batch: int = 8) -> int:
    """Detect on ``images`` and write ``out_dir/<stem>.txt`` KITTI result files; returns #boxes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    total = 0
    images = [Path(p) for p in images]
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        results = model.predict([str(p) for p in chunk], imgsz=imgsz, conf=conf, iou=iou, max_det=max_det,
                                device=device, verbose=False, save=False, stream=False)
        for path, res in zip(chunk, results):
            boxes = res.boxes
            xyxy = boxes.xyxy.cpu().numpy() if len(boxes) else np.zeros((0, 4))
            cls = boxes.cls.cpu().numpy() if len(boxes) else np.zeros(0)
            sc = boxes.conf.cpu().numpy() if len(boxes) else np.zeros(0)
            kitti.write_label(out_dir / f"{path.stem}.txt", detections_frame(xyxy, cls, sc, res.names))
            total += len(xyxy)
    return total


def val_metrics(model, data_yaml: Path, *, imgsz: int, batch: int, device: str, conf: float, iou: float,
                names: Sequence[str], project: Path) -> dict:
    """ultralytics val on the ``val`` split: ``{"mAP50": {"all", <class>...}, "mAP50-95": {...}}``.

    Classes without ground truth in the split are absent from the per-class entries.
    """
    metrics = model.val(data=str(data_yaml), split="val", imgsz=imgsz, batch=batch, device=device, conf=conf,
                        iou=iou, plots=False, save_json=False, verbose=False, project=str(project), name="val",
                        exist_ok=True, workers=0)
    box = metrics.box
    out = {"mAP50": {"all": float(box.map50)}, "mAP50-95": {"all": float(box.map)}}
    for k, ci in enumerate(np.asarray(box.ap_class_index).tolist()):
        out["mAP50"][str(names[int(ci)])] = float(box.ap50[k])
        out["mAP50-95"][str(names[int(ci)])] = float(box.ap[k])
    return out
