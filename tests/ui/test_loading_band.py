"""The slider's band of loaded slices while a series loads progressively."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from viewer.dicom.headers import read_header
from viewer.dicom.readers import load_stack
from viewer.dicom.stacks import split_series
from viewer.synth.simple import write_bench_series
from viewer.ui.app import create_application
from viewer.ui.image_view import READY_COLOUR, ImageView, MarkedSlider
from viewer.ui.series_info import series_display_from_stack


def test_ready_runs_follow_the_marked_slices_and_vanish_when_all_are_ready(qtbot) -> None:
    create_application()
    slider = MarkedSlider(Qt.Orientation.Horizontal)
    qtbot.addWidget(slider)
    slider.setRange(0, 9)
    assert slider.ready_runs() == []
    slider.set_ready(np.zeros(10, bool))
    for k in (0, 1, 2, 5, 9):
        slider.mark_ready(k)
    assert slider.ready_runs() == [(0, 2), (5, 5), (9, 9)]
    for k in range(10):
        slider.mark_ready(k)
    assert slider.ready is None and slider.ready_runs() == []


def _band_pixels(slider: MarkedSlider) -> int:
    image = QImage(slider.size(), QImage.Format.Format_ARGB32)
    image.fill(0)
    slider.render(image)
    r, g, b, _ = READY_COLOUR
    count = 0
    for y in range(image.height()):
        for x in range(image.width()):
            c = image.pixelColor(x, y)
            count += abs(c.red() - r) < 40 and abs(c.green() - g) < 40 and abs(c.blue() - b) < 40
    return count


def test_the_view_shows_the_band_while_slices_arrive_and_not_once_loaded(qtbot, tmp_path: Path) -> None:
    create_application()
    paths = write_bench_series(tmp_path / "s", 6, 16)
    stack = split_series([read_header(p) for p in paths])[0]
    view = ImageView()
    qtbot.addWidget(view)
    view.resize(600, 400)
    view.show()
    qtbot.waitExposed(view)
    view.set_series(series_display_from_stack(stack))
    assert view.slider.ready is not None and not view.slider.ready.any()
    arrived: list[tuple[int, np.ndarray]] = []
    volume = load_stack(stack, on_slice=lambda k, a: arrived.append((k, a.copy())))
    assert [k for k, _ in arrived] == list(range(6))  # the slice shown first (0) is decoded first
    for k, array in arrived[:3]:
        view.set_slice_data(k, array)
    assert view.slider.ready_runs() == [(0, 2)]
    assert view.current_slice() is not None and view.index == 0
    during = _band_pixels(view.slider)
    view.set_volume(volume)
    assert view.slider.ready is None
    assert during - _band_pixels(view.slider) >= 100  # the band (half the groove, 2 px high) is gone
