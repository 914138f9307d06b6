"""People-facing formatting of DICOM names, dates, times and sex (one home for the browser, view and report)."""

from __future__ import annotations

import pytest

from viewer.dicom.identifiers import display_date, display_name, display_sex, display_time


@pytest.mark.parametrize(
    ("pn", "shown"),
    [
        ("DOE^JOHN^^^", "DOE, JOHN"),
        ("DOE^JOHN^PAUL^DR^JR", "DOE, JOHN PAUL"),
        ("DOE^^^DR", "DOE"),  # a prefix is not a given name
        ("^JOHN", "JOHN"),
        ("Yamada^Tarou=山田^太郎=やまだ^たろう", "Yamada, Tarou"),
        ("Anonymous", "Anonymous"),
        ("", ""),
    ],
)
def test_display_name(pn: str, shown: str) -> None:
    assert display_name(pn) == shown


def test_display_date_time_sex() -> None:
    assert display_date("20240131") == "2024-01-31"
    assert display_date("2024.01.31") == "2024.01.31"  # not DA: unchanged
    assert display_time("143012.5") == "14:30"
    assert display_time("") == ""
    assert [display_sex(s) for s in ("M", "f", "O", "", "X")] == ["male", "female", "other", "", "X"]
