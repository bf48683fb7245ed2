"""Hand-made KITTI val sets and detection runs for the study-metrics tests (pure numpy, fast).

A synthetic val image holds cars on a flat road seen by a KITTI-like rectified camera: each car
(1.6 m wide, 1.5 m tall, 3.9 m long, aligned with z) is projected from its near face, so its
box bottom lies on the ground plane; labels carry the 3D location like KITTI's label_2.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sim2real.formats import kitti

FX, CX, CY = 721.5377, 609.5593, 172.854
P2 = np.array([[FX, 0, CX, 44.857], [0, FX, CY, 0.2163], [0, 0, 1, 0.0027]])
CAM_H, W_M, H_M, L_M = 1.65, 1.6, 1.5, 3.9
WIDTH, HEIGHT = 1242, 375


def label_row(type_, box, occluded=0, truncated=0.0, xyz=(-1000.0, -1000.0, -1000.0), score=None) -> dict:
    row = dict(type=type_, truncated=truncated, occluded=occluded, alpha=-10.0, left=box[0], top=box[1],
               right=box[2], bottom=box[3], h=H_M, w=W_M, l=L_M, x=xyz[0], y=xyz[1], z=xyz[2], rotation_y=0.0)
    if type_ == "DontCare":
        row.update(truncated=-1.0, occluded=-1, h=-1.0, w=-1.0, l=-1.0)
    if score is not None:
        row["score"] = score
    return row


def car_box(x_m: float, z_m: float) -> list[float]:
    """2D box of a car centred at (x, ground, z): its near face at z - L/2 (as P2 projects it)."""
    zn = z_m - L_M / 2
    left = FX * (x_m - W_M / 2) / zn + CX
    right = FX * (x_m + W_M / 2) / zn + CX
    top = FX * (CAM_H - H_M) / zn + CY
    bottom = FX * CAM_H / zn + CY
    return [float(np.clip(left, 0, WIDTH)), float(top), float(np.clip(right, 0, WIDTH)), float(min(bottom, HEIGHT))]


def make_world(n_images: int, seed: int, cars_per_image: float = 4.0, z_range=(6.0, 80.0)) -> list[pd.DataFrame]:
    """Label tables: cars at random lanes/distances (occlusion 0-2), a Van now and then, DontCare."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_images):
        rows = []
        n = int(rng.poisson(cars_per_image))
        zs = np.sort(rng.uniform(*z_range, n))
        for k, z in enumerate(zs):
            x = float(rng.choice([-7.0, -3.5, 0.0, 3.5, 7.0]) + rng.uniform(-0.5, 0.5))
            t = "Van" if rng.uniform() < 0.08 else "Car"
            rows.append(label_row(t, car_box(x, z), occluded=int(rng.choice([0, 0, 1, 2])), xyz=(x, CAM_H, float(z))))
        if rng.uniform() < 0.5:
            rows.append(label_row("DontCare", [900.0, 170.0, 960.0, 190.0]))
        out.append(pd.DataFrame(rows, columns=kitti.LABEL_COLUMNS))
    return out


def detect(labels: list[pd.DataFrame], recall: float, seed: int, jitter_px: float = 1.0, fp_per_image: float = 2.0,
           far_recall: float | None = None, far_m: float = 40.0) -> list[pd.DataFrame]:
    """A detector: finds each Car/Van with probability ``recall`` (``far_recall`` beyond ``far_m``),
    boxes jittered by ``jitter_px``, TP scores high, plus low-scoring false positives."""
    rng = np.random.default_rng(seed)
    out = []
    for df in labels:
        rows = []
        for r in df.itertuples(index=False):
            if r.type == "DontCare":
                continue
            p = far_recall if (far_recall is not None and r.z >= far_m) else recall
            if rng.uniform() < p:
                b = np.array([r.left, r.top, r.right, r.bottom]) + rng.normal(0, jitter_px, 4)
                b[2], b[3] = max(b[2], b[0] + 2), max(b[3], b[1] + 2)
                rows.append(label_row(r.type, list(np.round(b, 2)), score=round(float(rng.uniform(0.4, 1.0)), 4)))
        for _ in range(rng.poisson(fp_per_image)):
            x, y, h = rng.uniform(0, 1100), rng.uniform(150, 250), rng.uniform(10, 60)
            rows.append(label_row("Car", [round(x, 2), round(y, 2), round(x + 1.5 * h, 2), round(y + h, 2)],
                                  score=round(float(rng.uniform(0.01, 0.6)), 4)))
        out.append(pd.DataFrame(rows, columns=kitti.RESULT_COLUMNS))
    return out


def write_val(root: Path, labels: list[pd.DataFrame], p2: np.ndarray | None = P2) -> Path:
    """``root/kitti_labels``, ``root/calib`` (unless p2 is None) and ``root/frames.csv``."""
    rows = []
    for i, df in enumerate(labels):
        image_id = f"{i:06d}"
        kitti.write_label(root / "kitti_labels" / f"{image_id}.txt", df)
        if p2 is not None:
            kitti.write_calib(root / "calib" / f"{image_id}.txt", {"P2": p2, "R0_rect": np.eye(3)})
        rows.append({"image_id": image_id, "width": WIDTH, "height": HEIGHT})
    pd.DataFrame(rows).to_csv(root / "frames.csv", index=False)
    return root


def write_run(eval_root: Path, name: str, seed: int, dets: list[pd.DataFrame]) -> Path:
    folder = eval_root / name / f"seed{seed}" / "detections"
    folder.mkdir(parents=True, exist_ok=True)
    for i, df in enumerate(dets):
        kitti.write_label(folder / f"{i:06d}.txt", df)
    return folder


STUDY = {"bootstrap_resamples": 1000, "ci_level": 0.95, "bootstrap_seed": 0, "distance_bins_m": [0, 20, 40, 60],
         "camera_height_m": None, "car_length_m": 3.9}
