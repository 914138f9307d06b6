"""What the model misses, by kind: sensitivity per bleed kind, volume, contrast and slice thickness, and
specificity per slice thickness, each with a Wilson 95% interval.

A series with two kinds of bleed counts under both kinds. Volume and contrast bands use the series' largest and
most conspicuous bleed. Groups come from the phantom labels' ``lesions`` (kind, volume, contrast above brain);
series without them count only in the thickness rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

VOLUME_BANDS_ML = ((0.0, 0.5), (0.5, 5.0), (5.0, 30.0), (30.0, math.inf))
CONTRAST_BANDS_HU = ((0.0, 20.0), (20.0, 35.0), (35.0, math.inf))
THICKNESS_BANDS_MM = ((0.0, 1.5), (1.5, 4.0), (4.0, 6.0), (6.0, math.inf))


class Outcome(Protocol):
    """The parts of an evaluated series this module reads."""

    label: int
    probability: float
    lesions: Sequence[dict[str, Any]]
    slice_mm: float


@dataclass(frozen=True)
class GroupRate:
    """Sensitivity (or specificity) of one group of series with its Wilson 95% interval."""

    group: str
    what: str  # "sensitivity" or "specificity"
    series: int
    correct: int
    rate: float
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form (for the card and ``--json``)."""
        return asdict(self)


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of ``k`` successes in ``n``; good with small groups and rates near 0 or 1."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _band_name(lo: float, hi: float, unit: str, sign: str = "") -> str:
    if math.isinf(hi):
        return f"≥ {sign}{lo:g} {unit}"
    if lo == 0.0:
        return f"< {sign}{hi:g} {unit}"
    return f"{sign}{lo:g}–{hi:g} {unit}"


def _band(value: float, bands: Iterable[tuple[float, float]]) -> tuple[float, float] | None:
    return next(((lo, hi) for lo, hi in bands if lo <= value < hi), None)


def _rate(group: str, what: str, hits: list[bool]) -> GroupRate:
    n, k = len(hits), sum(hits)
    low, high = wilson_interval(k, n)
    return GroupRate(group, what, n, k, k / n if n else float("nan"), low, high)


_UNKNOWN_THICKNESS = "slices of unknown thickness"


def _volume_group(band: tuple[float, float]) -> str:
    return f"volume {_band_name(*band, 'ml')}"


def _contrast_group(band: tuple[float, float]) -> str:
    return f"contrast {_band_name(*band, 'HU', '+')}"


def _thickness_group(band: tuple[float, float] | None) -> str:
    return f"slices {_band_name(*band, 'mm')}" if band else _UNKNOWN_THICKNESS


def rates_by_group(outcomes: Sequence[Outcome], threshold: float, kinds: Sequence[str]) -> list[GroupRate]:
    """Sensitivity by kind (in ``kinds`` order), volume, contrast and thickness; specificity by thickness."""
    groups: dict[str, list[bool]] = {}
    normals: dict[str, list[bool]] = {}
    for o in outcomes:
        positive = o.probability >= threshold
        thick = _thickness_group(_band(o.slice_mm, THICKNESS_BANDS_MM))
        if o.label == 0:
            normals.setdefault(thick, []).append(not positive)
            continue
        keys = list(dict.fromkeys(str(les["kind"]) for les in o.lesions))
        if o.lesions:
            vb = _band(max(float(les["volume_ml"]) for les in o.lesions), VOLUME_BANDS_ML)
            cb = _band(max(float(les["contrast_hu"]) for les in o.lesions), CONTRAST_BANDS_HU)
            keys += [_volume_group(vb)] if vb else []
            keys += [_contrast_group(cb)] if cb else []
        for key in [*keys, thick]:
            groups.setdefault(key, []).append(positive)

    order = [
        *kinds,
        *map(_volume_group, VOLUME_BANDS_ML),
        *map(_contrast_group, CONTRAST_BANDS_HU),
        *map(_thickness_group, THICKNESS_BANDS_MM),
        _UNKNOWN_THICKNESS,
    ]
    rank = {name: i for i, name in enumerate(order)}

    def ranked(table: dict[str, list[bool]]) -> list[tuple[str, list[bool]]]:
        return sorted(table.items(), key=lambda kv: rank.get(kv[0], len(rank)))

    return [_rate(k, "sensitivity", v) for k, v in ranked(groups)] + [
        _rate(k, "specificity", v) for k, v in ranked(normals)
    ]


#: A group whose sensitivity, pooled over a card's evaluations, is under this is named beside a negative finding.
WEAK_SENSITIVITY = 0.8
#: ... when it holds at least this many bleed series (one miss in two says little).
MIN_GROUP_SERIES = 5


def weakest_groups(evaluations: Iterable[Mapping[str, Any]], limit: int = 3) -> list[GroupRate]:
    """What a model misses most: the sensitivity rows (``by_group``) of its card's evaluations, pooled over them,
    under :data:`WEAK_SENSITIVITY` with at least :data:`MIN_GROUP_SERIES` series, lowest rate first."""
    counts: dict[str, list[int]] = {}
    for evaluation in evaluations:
        for row in evaluation.get("by_group") or []:
            if not isinstance(row, Mapping) or row.get("what") != "sensitivity":
                continue
            try:
                n, k = int(row["series"]), int(row["correct"])
            except (KeyError, TypeError, ValueError):
                continue
            total = counts.setdefault(str(row.get("group", "")), [0, 0])
            total[0] += n
            total[1] += k
    weak = []
    for group, (n, k) in counts.items():
        if group and n >= MIN_GROUP_SERIES and k / n < WEAK_SENSITIVITY:
            weak.append(GroupRate(group, "sensitivity", n, k, k / n, *wilson_interval(k, n)))
    return sorted(weak, key=lambda r: (r.rate, -r.series))[:limit]


def _bleeds(group: str) -> str:
    """A group's name as words about bleeds: ``bleeds of volume < 0.5 ml``, ``intraparenchymal bleeds``."""
    if group.startswith("volume "):
        return f"bleeds of {group}"
    if group.startswith("contrast "):
        return f"bleeds of {group} over brain"
    if group.startswith("slices "):
        return f"bleeds in {group}"
    return f"{group} bleeds"


def misses_sentence(groups: Sequence[GroupRate]) -> str:
    """``In its card's evaluations (synthetic phantoms) it most often misses …``, or ``""`` with no weak group."""
    if not groups:
        return ""
    parts = [f"{_bleeds(g.group)} ({g.correct} of {g.series} found)" for g in groups]
    return "In its card's evaluations (synthetic phantoms) it most often misses " + "; ".join(parts) + "."


def format_rates(rows: Sequence[GroupRate]) -> str:
    """The rows as an aligned text table."""
    if not rows:
        return ""
    width = max(len(r.group) for r in rows)
    lines = [f"{'group':<{width}}  {'measure':<11}  {'series':>6}  {'rate':>5}  95% interval"]
    for r in rows:
        lines.append(
            f"{r.group:<{width}}  {r.what:<11}  {r.series:>6}  {r.rate:>5.2f}  {r.low:.2f}–{r.high:.2f}"
        )
    return "\n".join(lines)


def rates_markdown(rows: Sequence[GroupRate]) -> list[str]:
    """The rows as Markdown table lines."""
    lines = ["| Series | Measure | n | Rate | 95% interval |", "| --- | --- | --- | --- | --- |"]
    lines += [
        f"| {r.group} | {r.what} | {r.series} | {r.rate:.2f} | {r.low:.2f}–{r.high:.2f} |" for r in rows
    ]
    return lines
