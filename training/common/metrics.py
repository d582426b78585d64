"""Metric helpers for binary scores (numpy + scikit-learn), used to derive decision thresholds.

All functions take ``y`` (0/1 labels) and ``p`` (scores, e.g. probabilities from the ONNX model)
and flag a case as positive when ``p >= threshold``.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def threshold_stats(y, p, threshold: float) -> Dict[str, float]:
    """Precision, recall, F1, flaggedRate (share with p >= threshold) and approvalRate (share with
    p < threshold) at one threshold; ``tp``/``fp``/``fn`` counts too."""
    y = np.asarray(y).astype(int)
    flag = np.asarray(p) >= threshold
    tp = int(np.sum(flag & (y == 1)))
    fp = int(np.sum(flag & (y == 0)))
    fn = int(np.sum(~flag & (y == 1)))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {'value': float(threshold), 'precision': precision, 'recall': recall, 'f1': f1,
            'flaggedRate': float(flag.mean()), 'approvalRate': float(1 - flag.mean()), 'tp': tp, 'fp': fp, 'fn': fn}


def _grid(step: float = 0.01) -> np.ndarray:
    return np.round(np.arange(step, 1.0, step), 6)


def best_f1_threshold(y, p, grid: Optional[Iterable[float]] = None) -> float:
    """Threshold on a 0.01 grid that maximises F1 (ties: the lowest)."""
    grid = _grid() if grid is None else np.asarray(list(grid))
    f1 = [threshold_stats(y, p, t)['f1'] for t in grid]
    return float(grid[int(np.argmax(f1))])


def threshold_for_precision(y, p, min_precision: float, grid: Optional[Iterable[float]] = None) -> float:
    """Lowest threshold on a 0.01 grid whose precision is >= ``min_precision`` (and that flags at
    least one case); the highest grid value if none reaches it."""
    grid = _grid() if grid is None else np.asarray(list(grid))
    for t in grid:
        s = threshold_stats(y, p, t)
        if s['tp'] + s['fp'] > 0 and s['precision'] >= min_precision:
            return float(t)
    return float(grid[-1])


def threshold_for_recall(y, p, min_recall: float, grid: Optional[Iterable[float]] = None) -> float:
    """Highest threshold on a 0.01 grid whose recall is still >= ``min_recall``."""
    grid = _grid() if grid is None else np.asarray(list(grid))
    ok = [t for t in grid if threshold_stats(y, p, t)['recall'] >= min_recall]
    return float(max(ok)) if ok else float(grid[0])


def binary_summary(y, p) -> Dict[str, float]:
    """AUC, average precision, Brier score, prevalence, mean score and n."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    return {'auc': float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None,
            'averagePrecision': float(average_precision_score(y, p)) if y.sum() else None,
            'brier': float(brier_score_loss(y, p)), 'prevalence': float(y.mean()),
            'meanPrediction': float(p.mean()), 'n': int(len(y))}


def bootstrap_auc_diff(y, p_a, p_b, n: int = 1000, seed: int = 0) -> Dict[str, float]:
    """Paired bootstrap of AUC(p_a) - AUC(p_b): mean and 95 % interval."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y).astype(int)
    diffs = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        if 0 < y[idx].sum() < len(idx):
            diffs.append(roc_auc_score(y[idx], p_a[idx]) - roc_auc_score(y[idx], p_b[idx]))
    diffs = np.asarray(diffs)
    return {'mean': float(diffs.mean()), 'ci95': [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))]}
