"""Per-kind sensitivity: grouping, bands, intervals, and the card's table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from viewer.model.misses import format_rates, rates_by_group, rates_markdown, wilson_interval
from viewer.synth.bleeds import KINDS


@dataclass
class _Outcome:
    label: int
    probability: float
    lesions: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    slice_mm: float = 5.0


def _les(kind: str, volume: float, contrast: float) -> dict[str, Any]:
    return {"kind": kind, "volume_ml": volume, "contrast_hu": contrast}


def test_wilson_interval_brackets_the_rate_and_handles_extremes() -> None:
    lo, hi = wilson_interval(9, 10)
    assert lo < 0.9 < hi <= 1.0
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    assert wilson_interval(0, 0) != wilson_interval(0, 0)  # nan: no series, no rate


def test_rates_group_by_kind_volume_contrast_and_thickness() -> None:
    outcomes = [
        _Outcome(1, 0.9, (_les("subdural", 12.0, 40.0), _les("intraventricular", 0.3, 25.0))),
        _Outcome(1, 0.1, (_les("intraparenchymal", 0.05, 12.0),), slice_mm=2.5),
        _Outcome(1, 0.8, (_les("intraparenchymal", 40.0, 45.0),)),
        _Outcome(0, 0.7),
        _Outcome(0, 0.2, slice_mm=0.625),
    ]
    rows = {(r.group, r.what): r for r in rates_by_group(outcomes, 0.5, KINDS)}
    assert rows[("intraparenchymal", "sensitivity")].series == 2
    assert rows[("intraparenchymal", "sensitivity")].correct == 1
    assert rows[("subdural", "sensitivity")].rate == 1.0
    assert rows[("intraventricular", "sensitivity")].correct == 1  # a two-kind series counts under both
    assert rows[("volume < 0.5 ml", "sensitivity")].correct == 0  # the series' largest bleed sets its band
    assert rows[("volume 5–30 ml", "sensitivity")].correct == 1
    assert rows[("contrast < +20 HU", "sensitivity")].rate == 0.0
    assert rows[("slices 1.5–4 mm", "sensitivity")].rate == 0.0
    assert rows[("slices 4–6 mm", "specificity")].rate == 0.0
    assert rows[("slices < 1.5 mm", "specificity")].rate == 1.0
    order = [r.group for r in rates_by_group(outcomes, 0.5, KINDS)]
    assert order.index("intraparenchymal") < order.index("subdural") < order.index("volume < 0.5 ml")
    assert order.index("volume < 0.5 ml") < order.index("volume 5–30 ml") < order.index("contrast < +20 HU")


def test_tables_show_every_row() -> None:
    rows = rates_by_group([_Outcome(1, 0.9, (_les("epidural", 20.0, 40.0),)), _Outcome(0, 0.1)], 0.5, KINDS)
    text = format_rates(rows)
    md = rates_markdown(rows)
    assert "epidural" in text and len(md) == 2 + len(rows)
    assert all(line.startswith("|") for line in md)


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_thresholds_at_the_ends(threshold: float) -> None:
    rows = rates_by_group([_Outcome(1, 0.5, (_les("subarachnoid", 2.0, 30.0),))], threshold, KINDS)
    assert rows[0].rate == (1.0 if threshold == 0.0 else 0.0)
