"""Classification metrics on plain arrays (no scikit-learn): AUROC, sensitivity/specificity, calibration, bootstrap
intervals."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Metric keys in the order the table and the card list them, with their descriptions.
METRIC_LABELS: dict[str, str] = {
    "studies": "series evaluated",
    "studies_with_bleed": "series with a bleed",
    "study_auroc": "study AUROC",
    "threshold": "operating threshold (study probability)",
    "sensitivity": "sensitivity at the threshold",
    "specificity": "specificity at the threshold",
    "calibration_error": "expected calibration error (10 bins)",
    "slice_auroc": "slice AUROC of the per-slice probabilities",
    "hidden_saliency_auroc": "slice AUROC of the hidden-state track (series with a bleed)",
    "hidden_saliency_auroc_all_series": "slice AUROC of the hidden-state track (all series)",
    "hidden_saliency_auroc_missed": "slice AUROC of the hidden-state track (bleed series the model misses)",
    "hidden_carried_magnitude_forward": "share of the forward track's evidence on bleed slices carried on "
    "(by magnitude)",
    "hidden_carried_magnitude_reverse": "share of the reverse track's evidence on bleed slices carried on "
    "(by magnitude)",
    "hidden_saliency_randomised_spearman": "Spearman of the hidden-state track with a GRU+head-randomised model",
    "pointing_game": "pointing game of the pixel saliency (bleed slices)",
    "pointing_game_randomised": "pointing game of a fully randomised model (control)",
    "pointing_slices": "bleed slices in the pointing game",
}
_COUNTS = ("studies", "studies_with_bleed", "pointing_slices")


def format_metric(key: str, value: float) -> str:
    """Counts as integers, everything else to four decimals."""
    return f"{int(value)}" if key in _COUNTS and np.isfinite(value) else f"{value:.4f}"


def _clean(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    keep = np.isfinite(y) & np.isfinite(s)
    return y[keep].astype(bool), s[keep]


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (the Mann–Whitney U statistic, ties counted half); NaN with one class only."""
    y, s = _clean(labels, scores)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata  # 0.6 s to import; the viewer's window reads this module's labels only

    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def sensitivity_specificity(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float
) -> tuple[float, float]:
    """Sensitivity and specificity when ``probability ≥ threshold`` is called positive."""
    y, p = _clean(labels, probabilities)
    called = p >= threshold
    sens = float(called[y].mean()) if y.any() else float("nan")
    spec = float((~called[~y]).mean()) if (~y).any() else float("nan")
    return sens, spec


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """ECE: the mean |observed rate − mean probability| over ``bins`` equal-width bins, weighted by bin size."""
    y, p = _clean(labels, probabilities)
    if y.size == 0:
        return float("nan")
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs(float(y[inside].mean()) - float(p[inside].mean()))
    return float(total / y.size)


def youden_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The probability threshold maximising sensitivity + specificity − 1 (midway between adjacent scores)."""
    y, p = _clean(labels, probabilities)
    if not y.any() or y.all():
        return 0.5
    cuts = np.unique(p)
    candidates = np.concatenate([[cuts[0]], (cuts[:-1] + cuts[1:]) / 2])
    best, best_j = 0.5, -1.0
    for t in candidates:
        sens, spec = sensitivity_specificity(y, p, float(t))
        if sens + spec - 1 > best_j:
            best, best_j = float(t), sens + spec - 1
    return float(np.clip(best, 1e-4, 1 - 1e-4))


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float],
    n: int,
    *,
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(indices)`` over ``n`` items resampled with replacement.

    ``statistic`` takes an index array into the items (``np.arange(n)`` gives the point estimate), so several
    statistics evaluated with the same ``seed`` see the same resamples (paired differences). Resamples on which
    the statistic is undefined (NaN, e.g. an AUROC with one class) are left out; ``(nan, nan)`` when all are.
    """
    if n < 1 or rounds < 1:
        raise ValueError("the bootstrap needs at least one item and one round")
    if not 0.0 < level < 1.0:
        raise ValueError("the level lies in (0, 1)")
    rng = np.random.default_rng(seed)
    values = np.asarray([statistic(rng.integers(0, n, n)) for _ in range(rounds)], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)
