"""Proxy A-distance: a linear domain classifier, cross-validated (Ben-David et al. 2007)."""
from __future__ import annotations

import numpy as np


def proxy_a_distance(x_sim: np.ndarray, x_real: np.ndarray, *, folds: int = 5, seed: int = 0,
                     C: float = 1.0) -> dict:
    """Cross-validated linear domain classifier -> proxy A-distance.

    Parameters
    ----------
    x_sim, x_real : (N, D) per-image features of each domain (same D).
    folds : stratified k-fold splits (capped at the smaller class size, >= 2).

    Returns
    -------
    {"pad": d_A in [0, 2], "pad_error": ε (1 − balanced accuracy), "pad_folds": k}.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([x_sim, x_real]).astype(np.float64)
    y = np.r_[np.zeros(len(x_sim), int), np.ones(len(x_real), int)]
    k = int(min(folds, len(x_sim), len(x_real)))
    if k < 2:
        raise ValueError(f"proxy A-distance needs >= 2 images per side, got {len(x_sim)} sim and {len(x_real)} real")
    if not np.isfinite(x).all():
        raise ValueError("non-finite per-image features")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=2000))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=int(seed))
    acc = float(np.mean(cross_val_score(clf, x, y, cv=cv, scoring="balanced_accuracy")))
    err = 1.0 - acc
    return {"pad": float(np.clip(2.0 * (1.0 - 2.0 * err), 0.0, 2.0)), "pad_error": err, "pad_folds": k}
