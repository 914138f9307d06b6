"""Timings of the 1 × 3 reformat layout on screen, for :mod:`viewer.bench.mpr`.

An :class:`~viewer.ui.mpr_view.MprView` (offscreen when there is no display) is shown at a reading-room size with
the saliency overlay on (maps for every tenth slice) and the probability strip; times run from the call to the
three panes repainted synchronously. Baseline in the same window: the three panes repainted with plain numpy
slices of the volume. Nothing is printed.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import numpy as np
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QApplication

from viewer.dicom.reformat import PlaneKind
from viewer.dicom.volume import Volume
from viewer.ui.app import create_application
from viewer.ui.mpr_view import Evidence, MprView
from viewer.ui.saliency_overlay import saliency_lut


def _application() -> QApplication:
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    return create_application()


def _stats(seconds: list[float]) -> dict[str, float]:
    ms = sorted(1000.0 * s for s in seconds)
    return {
        "median_ms": statistics.median(ms),
        "p95_ms": ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))],
        "max_ms": ms[-1],
    }


def _repaint(view: MprView) -> None:
    for pane in view.panes.values():
        pane.canvas.viewport().repaint()


def measure_mpr(volume: Volume, frames: int = 40, size: tuple[int, int] = (1500, 600)) -> dict[str, Any]:
    """First image of the three planes after the layout switch, and the crosshair drag's frame time."""
    app = _application()
    view = MprView()
    view.resize(*size)
    view.show()
    app.processEvents()
    try:
        n = volume.n_slices
        maps = {k: np.full(volume.array.shape[1:], 128, np.uint8) for k in range(0, n, 10)}
        t0 = time.perf_counter()
        view.set_window(40.0, 80.0)
        view.set_volume(volume, n // 2, "bench")
        view.set_overlay(maps.get, saliency_lut(0.3), 0.5)
        view.set_evidence(Evidence(np.linspace(0.0, 1.0, n), [n // 3, n // 2], "bench"))
        _repaint(view)
        first = time.perf_counter() - t0
        app.processEvents()

        reformat = view.reformat
        assert reformat is not None
        axial = reformat.layout.axes[PlaneKind.AXIAL]
        x0, y0, _ = axial.to_view(view.point)
        drag: list[float] = []
        for i in range(frames):  # a diagonal drag in the axial pane: coronal and sagittal move every frame
            offset = 0.5 * (i + 1)
            t0 = time.perf_counter()
            view.click(PlaneKind.AXIAL, x0 + offset, y0 + offset)
            _repaint(view)
            drag.append(time.perf_counter() - t0)
        coronal = reformat.layout.axes[PlaneKind.CORONAL]
        cx, cy, _ = coronal.to_view(view.point)
        drag_coronal: list[float] = []
        for i in range(frames):  # a drag in the coronal pane: axial and sagittal move
            t0 = time.perf_counter()
            view.click(PlaneKind.CORONAL, cx - 0.5 * (i + 1), cy - 0.5 * (i + 1))
            _repaint(view)
            drag_coronal.append(time.perf_counter() - t0)

        baseline = _baseline(view, volume, frames)
        app.processEvents()
        return {
            "viewport_px": [
                view.panes[PlaneKind.AXIAL].canvas.viewport().width(),
                view.panes[PlaneKind.AXIAL].canvas.viewport().height(),
            ],
            "first_image_ms": 1000.0 * first,
            "drag": _stats(drag),
            "drag_in_coronal": _stats(drag_coronal),
            "numpy_slices_repaint": _stats(baseline),
        }
    finally:
        view.close()
        view.deleteLater()
        app.processEvents()


def _baseline(view: MprView, volume: Volume, frames: int) -> list[float]:
    """The same three panes repainted with numpy slices of the array (no geometry, no overlay)."""
    array = volume.array
    n, rows, cols = array.shape
    dy, dx = volume.spacing[1], volume.spacing[2]
    dz = volume.spacing[0]
    levels = (0.0, 80.0)
    out = []
    for i in range(frames):
        k, j, c = (n // 2 + i) % n, (rows // 2 + i) % rows, (cols // 2 + i) % cols
        t0 = time.perf_counter()
        view.panes[PlaneKind.AXIAL].set_image(array[k], QRectF(0, 0, cols * dx, rows * dy), levels, None)
        view.panes[PlaneKind.CORONAL].set_image(array[:, j, :], QRectF(0, 0, cols * dx, n * dz), levels, None)
        view.panes[PlaneKind.SAGITTAL].set_image(
            array[:, :, c], QRectF(0, 0, rows * dy, n * dz), levels, None
        )
        _repaint(view)
        out.append(time.perf_counter() - t0)
    return out
