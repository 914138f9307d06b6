"""The ablation's numbers (:mod:`viewer.model.ablation`): bootstrap intervals per run and per variant, the
markdown table and the model card's "Ablation" section.

Every interval is a 95 % percentile bootstrap over series (a resampled series brings all its slices), with the
same resamples for every run and metric, so differences between variants are paired. A variant's value is the
mean over its seeds, and its interval that of the seed mean on the same resamples: it covers the sampling of the
validation series, not the spread between seeds (two seeds say little about that; the per-run table shows them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from viewer.model.metrics import auroc, bootstrap_ci

BASELINE = "bigru"

#: Metric key → label. The tracks are scored by their slice AUROC against the slice labels, on bleed series only.
METRICS: dict[str, str] = {
    "study_auroc": "study AUROC",
    "slice_auroc": "slice AUROC",
    "occlusion_track_auroc": "occlusion-track AUROC",
    "state_difference_track_auroc": "state-difference track AUROC",
}
TRACK_NOTE = (
    "Occlusion track: each slice's effect on the study logit when its CNN feature is replaced by the mean feature "
    "of the normal training slices; its slice AUROC against the slice labels on the series with a bleed. It reads "
    "only the study logit, so it is defined alike for every variant; it is not the product's hidden-state track. "
    "State-difference track: the product's own hidden-state track (viewer/model/explanations.py, against the "
    "encoder model's normal reference series), scored the same way; only the GRU variants have one."
)


def _array(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def _flat(items: Sequence[np.ndarray], idx: np.ndarray) -> np.ndarray:
    return np.concatenate([items[i] for i in idx]) if len(idx) else np.zeros(0)


class SeriesScores:
    """One run's per-series results on one folder, with its metrics as functions of a series index array."""

    def __init__(self, series: Sequence[dict[str, Any]]) -> None:
        self.uids = [str(s["series_uid"]) for s in series]
        self.labels = np.asarray([int(s["label"]) for s in series])
        self.study = np.asarray([float(s["study_probability"]) for s in series])
        self.slices = [_array(s["slice_probabilities"]) for s in series]
        self.slice_labels = [_array(s["slice_labels"]) for s in series]
        self.tracks: dict[str, list[np.ndarray | None]] = {
            key: [None if s.get(key) is None else _array(s[key]) for s in series]
            for key in ("occlusion", "state_difference")
        }

    def __len__(self) -> int:
        return len(self.uids)

    def has(self, metric: str) -> bool:
        if metric.endswith("_track_auroc"):
            key = metric.removesuffix("_track_auroc")
            return any(t is not None for t in self.tracks[key])
        return metric in METRICS

    def metric(self, name: str, idx: np.ndarray) -> float:
        if name == "study_auroc":
            return auroc(self.labels[idx], self.study[idx])
        if name == "slice_auroc":
            return auroc(_flat(self.slice_labels, idx), _flat(self.slices, idx))
        track = self.tracks[name.removesuffix("_track_auroc")]
        bleed = np.asarray([i for i in idx if self.labels[i] == 1 and track[i] is not None], dtype=int)
        return auroc(_flat(self.slice_labels, bleed), _flat(track, bleed))  # type: ignore[arg-type]


def _interval(statistic: Callable[[np.ndarray], float], n: int, rounds: int, seed: int) -> dict[str, float]:
    low, high = bootstrap_ci(statistic, n, rounds=rounds, seed=seed)
    return {"value": float(statistic(np.arange(n))), "low": low, "high": high}


def _mean_of(runs: Sequence[SeriesScores], name: str) -> Callable[[np.ndarray], float]:
    def statistic(idx: np.ndarray) -> float:
        values = [r.metric(name, idx) for r in runs]
        finite = [v for v in values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    return statistic


def _difference(
    runs: Sequence[SeriesScores], base: Sequence[SeriesScores], name: str
) -> Callable[[np.ndarray], float]:
    def statistic(idx: np.ndarray) -> float:
        diffs = [a.metric(name, idx) - b.metric(name, idx) for a, b in zip(runs, base, strict=True)]
        finite = [d for d in diffs if np.isfinite(d)]
        return float(np.mean(finite)) if finite else float("nan")

    return statistic


def summarise(
    records: Sequence[dict[str, Any]], split: str, *, rounds: int = 1000, seed: int = 0
) -> dict[str, Any] | None:
    """Per-run and per-variant metrics with intervals on ``split`` (``val`` or ``held_out``); None without data.

    ``delta_vs_bigru`` pairs each variant's seed with the ``bigru`` run of the same seed (same resamples).
    """
    present = [r for r in records if r.get(split)]
    if not present:
        return None
    scores = {(r["variant"], r["seed"]): SeriesScores(r[split]["series"]) for r in present}
    uids = next(iter(scores.values())).uids
    if any(s.uids != uids for s in scores.values()):
        raise ValueError(f"the runs were scored on different {split} series")
    n = len(uids)
    runs = []
    for r in present:
        sc = scores[(r["variant"], r["seed"])]
        runs.append(
            {
                "variant": r["variant"],
                "seed": r["seed"],
                "metrics": {
                    m: _interval(lambda idx, m=m, sc=sc: sc.metric(m, idx), n, rounds, seed)
                    for m in METRICS
                    if sc.has(m)
                },
                "train_seconds": r.get("train_seconds"),
            }
        )
    variants = []
    for variant in dict.fromkeys(r["variant"] for r in present):
        mine = [r for r in present if r["variant"] == variant]
        own = [scores[(variant, r["seed"])] for r in mine]
        pairs = [(scores[(variant, r["seed"])], scores.get((BASELINE, r["seed"]))) for r in mine]
        paired = [(a, b) for a, b in pairs if b is not None]
        entry: dict[str, Any] = {
            "variant": variant,
            "label": mine[0].get("label", variant),
            "seeds": [r["seed"] for r in mine],
            "metrics": {m: _interval(_mean_of(own, m), n, rounds, seed) for m in METRICS if own[0].has(m)},
            "parameters": mine[0]["parameters"],
            "cpu_seconds_per_series": {
                k: float(np.mean([r["cpu_seconds_per_series"][k] for r in mine]))
                for k in ("model", "sequence")
            },
            "train_seconds": float(np.mean([r["train_seconds"] for r in mine])),
        }
        if variant != BASELINE and paired:
            entry[f"delta_vs_{BASELINE}"] = {
                m: _interval(_difference([a for a, _ in paired], [b for _, b in paired], m), n, rounds, seed)
                for m in ("study_auroc", "slice_auroc", "occlusion_track_auroc")
            }
        variants.append(entry)
    return {
        "split": split,
        "data": present[0][split]["data"],
        "series": n,
        "series_with_bleed": int(next(iter(scores.values())).labels.sum()),
        "bootstrap_rounds": rounds,
        "runs": runs,
        "variants": variants,
    }


def _ci(entry: dict[str, float] | None, signed: bool = False) -> str:
    if entry is None or not np.isfinite(entry["value"]):
        return "–"
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return f"{fmt.format(entry['value'])} [{fmt.format(entry['low'])}, {fmt.format(entry['high'])}]"


VARIANT_COLUMNS = [
    "Variant",
    "Study AUROC [95% CI]",
    "Slice AUROC [95% CI]",
    "Occlusion-track AUROC [95% CI]",
    f"Δ study AUROC vs {BASELINE} [95% CI]",
    f"Δ slice AUROC vs {BASELINE} [95% CI]",
    "Parameters (sequence part)",
    "CPU s / series (sequence part, ms)",
]


def variant_rows(summary: dict[str, Any]) -> list[list[str]]:
    """The per-variant table's rows (strings), in the order of :data:`VARIANT_COLUMNS`."""
    rows = []
    for v in summary["variants"]:
        deltas = v.get(f"delta_vs_{BASELINE}", {})
        baseline = "(baseline)" if v["variant"] == BASELINE else "–"
        cpu = v["cpu_seconds_per_series"]
        rows.append(
            [
                f"{v['variant']}: {v['label']} (seeds {', '.join(str(s) for s in v['seeds'])})",
                _ci(v["metrics"].get("study_auroc")),
                _ci(v["metrics"].get("slice_auroc")),
                _ci(v["metrics"].get("occlusion_track_auroc")),
                *(
                    _ci(deltas[m], signed=True) if m in deltas else baseline
                    for m in ("study_auroc", "slice_auroc")
                ),
                f"{v['parameters']['total']:,} ({v['parameters']['sequence']:,})",
                f"{cpu['model']:.3f} ({1000 * cpu['sequence']:.2f})",
            ]
        )
    return rows


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


def _split_lines(summary: dict[str, Any], title: str) -> list[str]:
    lines = [
        f"## {title}",
        "",
        f"{summary['data']}: {summary['series']} series ({summary['series_with_bleed']} with a bleed); "
        f"{summary['bootstrap_rounds']} bootstrap resamples of the series.",
        "",
        *_table(VARIANT_COLUMNS, variant_rows(summary)),
        "",
        "Per run:",
        "",
    ]
    columns = ["Variant", "Seed", *(METRICS[m] + " [95% CI]" for m in METRICS), "Training s"]
    rows = [
        [
            r["variant"],
            str(r["seed"]),
            *(_ci(r["metrics"].get(m)) for m in METRICS),
            f"{r['train_seconds']:.0f}" if r.get("train_seconds") is not None else "–",
        ]
        for r in summary["runs"]
    ]
    return [*lines, *_table(columns, rows), ""]


def to_markdown(report: dict[str, Any]) -> str:
    """The whole ablation as Markdown: set-up, the validation tables, the held-out ones when there are any."""
    setup = report["setup"]
    lines = [
        "# Ablation: does the recurrence earn its place?",
        "",
        setup["description"],
        "",
        f"Training data: {setup['train']}.",
        "",
    ]
    lines += _split_lines(report["val"], "Validation")
    if report.get("held_out"):
        lines += _split_lines(report["held_out"], "Held-out")
    lines += [TRACK_NOTE, "", setup["timing"], ""]
    if setup.get("command"):
        lines += [f"Command: `{setup['command']}`", ""]
    return "\n".join(lines)


def card_section(report: dict[str, Any]) -> dict[str, Any]:
    """The model card's ``ablation`` entry: the validation table and what it means."""
    setup = report["setup"]
    return {
        "description": (
            f"{setup['description']} Training data: {setup['train']}. Validation: {report['val']['data']}."
        ),
        "columns": VARIANT_COLUMNS,
        "rows": variant_rows(report["val"]),
        "notes": [TRACK_NOTE, setup["timing"]],
        "command": setup.get("command", ""),
    }
