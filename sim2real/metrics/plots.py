"""Matplotlib helpers shared by the gap stage and the report."""
from __future__ import annotations

import numpy as np
import pandas as pd


def figure_to_rgb(fig) -> np.ndarray:
    """Render a matplotlib figure (Agg) to an RGB uint8 (H, W, 3) array and close it."""
    import matplotlib.pyplot as plt
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


def draw_blur_profile(ax, profile: pd.DataFrame, label: str, *, real: bool = True, color=None) -> None:
    """Draw a blur profile (``compare_domains`` curve) on a matplotlib axis: the variant's median
    log10 sharpness per box-height bin and, when ``real``, the real curve (black, dashed)."""
    ax.plot(profile["height_px"], profile["sim_log10_sharpness"], "o-", label=label, color=color)
    if real:
        ax.plot(profile["height_px"], profile["real_log10_sharpness"], "s--", color="black", label="real KITTI val")
    ax.set_xscale("log")
    ax.set_xlabel("box height [px] (near \u2192 right)")
    ax.set_ylabel("median log10 sharpness [px$^{-2}$]")
    ax.grid(True, which="both", alpha=0.3)


def plot_blur_profile(profile: pd.DataFrame, label: str) -> np.ndarray:
    """One variant's blur-vs-distance curve against real, as an RGB uint8 image (for trackers)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    draw_blur_profile(ax, profile, label)
    ax.legend(fontsize=8)
    ax.set_title(f"blur vs distance: {label}", fontsize=9)
    fig.tight_layout()
    return figure_to_rgb(fig)
