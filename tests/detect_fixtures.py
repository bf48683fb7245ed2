"""Tiny synthetic detection data for the detect tests: a variant dataset and a real-KITTI split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sim2real.formats import kitti, yolo
from sim2real.formats.images import write_image

W, H = 320, 96


def _scene(rng: np.random.Generator, n_cars: int):
    img = np.full((H, W, 3), 90, np.uint8)
    img[H // 2:] = 60  # road
    boxes = []
    for _ in range(n_cars):
        w = int(rng.integers(40, 70)); h = int(rng.integers(28, 44))
        x = int(rng.integers(0, W - w)); y = int(rng.integers(H // 2 - h // 2, H - h))
        img[y:y + h, x:x + w] = (200, 40, 40)
        img[y + h - 6:y + h, x + 4:x + 12] = 10
        boxes.append((x, y, x + w, y + h))
    return img, boxes


def make_variant(root: Path, name: str, n: int = 8, seed: int = 0, relative_to: Path | None = None) -> Path:
    """A variant dataset ``root/name`` (frames.csv with frame_id, image, label; YOLO labels)."""
    rng = np.random.default_rng(seed)
    folder = root / name
    rows = []
    for i in range(n):
        fid = f"Scene01_clone_{i:05d}"
        img, boxes = _scene(rng, 2)
        ip = folder / "images" / f"{fid}.jpg"
        lp = folder / "labels" / f"{fid}.txt"
        write_image(ip, img)
        b = np.array(boxes, float)
        yolo.write_labels(lp, [0] * len(b), yolo.boxes_to_yolo(b[:, 0], b[:, 1], b[:, 2], b[:, 3], W, H))
        base = relative_to or Path.cwd()
        rows.append({"frame_id": fid, "image": str(ip.resolve().relative_to(base.resolve())) if relative_to else str(ip),
                     "label": str(lp.resolve().relative_to(base.resolve())) if relative_to else str(lp)})
    pd.DataFrame(rows).to_csv(folder / "frames.csv", index=False)
    return folder


def kitti_rows(boxes, types=None, occluded=None) -> pd.DataFrame:
    n = len(boxes)
    b = np.asarray(boxes, float).reshape(n, 4)
    df = pd.DataFrame({"type": types or ["Car"] * n, "truncated": 0.0, "occluded": occluded or [0] * n,
                       "alpha": -10.0, "left": b[:, 0], "top": b[:, 1], "right": b[:, 2], "bottom": b[:, 3]})
    for c in ("h", "w", "l", "x", "y", "z", "rotation_y"):
        df[c] = -1.0
    return df


def make_real(root: Path, n: int = 6, seed: int = 1, calib: bool = False) -> Path:
    """A miniature real-KITTI training folder + ``real_frames.csv`` (all frames split val, plus one train);
    ``calib``: with KITTI calib files (P2), as the study's distance estimate needs."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n + 1):
        iid = f"{i:06d}"
        img, boxes = _scene(rng, 2)
        ip = root / "training" / "image_2" / f"{iid}.png"
        lp = root / "training" / "label_2" / f"{iid}.txt"
        write_image(ip, img)
        types = ["Car", "Van"][: len(boxes)]
        df = kitti_rows(boxes, types)
        dc = kitti_rows([(0, 0, 20, 20)], ["DontCare"])
        ped = kitti_rows([(250, 10, 262, 40)], ["Pedestrian"])
        kitti.write_label(lp, pd.concat([df, dc, ped], ignore_index=True))
        cp = root / "training" / "calib" / f"{iid}.txt"
        if calib:
            kitti.write_calib(cp, {"P2": np.array([[721.5, 0, 609.6, 44.9], [0, 721.5, 172.9, 0.22], [0, 0, 1, 0.003]])})
        rows.append({"image_id": iid, "split": "train" if i == n else "val", "image": str(ip), "label": str(lp),
                     "calib": str(cp) if calib else "", "semantic": "", "width": W, "height": H})
    csv = root / "real_frames.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def make_official_checkpoint(path: Path, model_yaml: str = "yolov5n-p6.yaml", nc: int = 80, seed: int = 0) -> Path:
    """A stand-in for an ultralytics release asset (``yolov5n6u.pt``): random weights, official layout.

    Built the way ultralytics writes its files: a training checkpoint (``ema`` = the model,
    ``train_args``, metrics) run through ultralytics' own ``strip_optimizer``, which gives the
    release layout (``{"model": <DetectionModel, fp16>, "ema": None, "optimizer": None,
    "train_args": {...}, "date", "version", ...}``). Every float tensor is drawn at random so that
    no value equals a freshly initialised model's. Call ``offline.configure`` first.
    """
    import torch
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.torch_utils import strip_optimizer

    model = DetectionModel(model_yaml, nc=nc, verbose=False)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                r = torch.randn(t.shape, generator=gen) * 0.05
                t.copy_(r.abs() + 0.5 if name.endswith("running_var") else r)
    model.names = {i: f"class{i}" for i in range(nc)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 299, "best_fitness": 0.5, "model": None, "ema": model, "updates": 1000,
                "optimizer": None,
                "train_args": {"model": model_yaml, "data": "coco.yaml", "imgsz": 1280, "epochs": 300},
                "train_metrics": {"metrics/mAP50(B)": 0.5}}, path)
    strip_optimizer(path)
    return path
