"""The 1 × 3 reformat layout: axial, coronal and sagittal planes of the loaded stack in true patient geometry.

Planes come from :class:`~viewer.dicom.reformat.Reformatter`, computed on demand for the plane shown (never a copy
of the volume). One patient point links the panes: a click or a crosshair drag in one plane moves the point within
that plane, so the other two planes move through it; scrolling a plane moves the point along that plane's normal,
so its line moves in the other two. Window/level and zoom are shared by the three panes while ``linked`` (the
preference), else each pane keeps its own; invert is shared.

Arrangements: :data:`ROW` (1 × 3) or :data:`GRID` (2 × 2: the fourth place holds an overview, a coronal average
projection of the whole stack with the crosshair and the per-slice strip; a click there moves the crosshair as in
the coronal pane).

The analysis' evidence follows: the pixel saliency (a map per acquired slice) is reformatted with the same
sampling plan as the image, each slice's map over that slice's own thickness (nearest slice, never interpolated
between two slices), and the per-slice probability with the key slices is drawn as a strip along the axis of the
coronal and sagittal panes that runs across the slices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from viewer.dicom.geometry import direction_letters
from viewer.dicom.pixels import robust_window
from viewer.dicom.reformat import PlaneImage, PlaneKind, Reformatter, Slab, SlabMode
from viewer.dicom.reformat.slab import SLAB_NAMES
from viewer.dicom.volume import Volume
from viewer.ui.image_view import INVERT_LUT, MIN_WIDTH, CursorInfo, track_colour
from viewer.ui.mpr_pane import MprPane, Strip

TITLES = {PlaneKind.AXIAL: "Axial", PlaneKind.CORONAL: "Coronal", PlaneKind.SAGITTAL: "Sagittal"}
#: The arrangements of the panes: three in a row, or two by two with the overview in the fourth place.
ROW, GRID = "1x3", "2x2"
_PLACES = {
    ROW: {PlaneKind.AXIAL: (0, 0), PlaneKind.CORONAL: (0, 1), PlaneKind.SAGITTAL: (0, 2)},
    GRID: {PlaneKind.AXIAL: (0, 0), PlaneKind.CORONAL: (0, 1), PlaneKind.SAGITTAL: (1, 0)},
}
#: Coronal planes averaged into the overview (evenly spread front to back): a radiograph-like projection.
OVERVIEW_PLANES = 32
OVERVIEW_NOTE = "Overview: coronal average projection"
WAITING = "Reformats appear once the series has loaded."
#: The legend note of the saliency overlay in the reformats.
SALIENCY_NOTE = (
    "Pixel saliency is defined per acquired slice: in each plane every slice's map covers that slice's own "
    "thickness, and slices without a computed map stay clear"
)


@dataclass(slots=True)
class Evidence:
    """Per-acquired-slice values for the strip (``values`` in 0…1, e.g. probabilities) and the key slices."""

    values: np.ndarray
    keys: list[int]
    text: str = ""


class MprView(QWidget):
    """Three linked reformatted planes of one stack.

    Signals
    -------
    point_changed(object)
        The crosshair's patient point (LPS mm, a numpy array).
    slice_changed(int)
        The acquired slice nearest the crosshair changed.
    window_changed(float, float)
        The user dragged window/level in a pane (center, width).
    cursor_moved(object)
        A :class:`~viewer.ui.image_view.CursorInfo` for the point under the mouse, or None.
    single_changed(str)
        The pane shown alone ("" when all three are shown).
    """

    point_changed = Signal(object)
    slice_changed = Signal(int)
    window_changed = Signal(float, float)
    cursor_moved = Signal(object)
    single_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mpr-view")
        self.volume: Volume | None = None
        self.reformat: Reformatter | None = None
        self.point = np.zeros(3)
        self.center, self.width, self.invert = 40.0, 80.0, False
        self.slab: Slab | None = None
        self.single: PlaneKind | None = None
        self.images: dict[PlaneKind, PlaneImage] = {}
        self._depths: dict[PlaneKind, float] = {}
        self._nearest: int | None = None
        self._overlay: Callable[[int], np.ndarray | None] | None = None
        self._overlay_lut: np.ndarray | None = None
        self._overlay_opacity = 0.5
        self._evidence: Evidence | None = None
        self._strips: dict[PlaneKind, Strip | None] = {}
        self._title = ""
        self.linked = True
        self._pane_windows: dict[PlaneKind, tuple[float, float]] = {}
        self.arrangement = ROW
        self._overview_for: Volume | None = None
        self._overview_levels = (0.0, 1.0)

        self.panes = {kind: MprPane(kind.value) for kind in PlaneKind}
        self.overview = MprPane("overview")
        self.overview.crosshair_requested.connect(lambda _n, x, y: self.click(PlaneKind.CORONAL, x, y))
        self.overview.scroll_requested.connect(lambda _n, steps: self.scroll(PlaneKind.AXIAL, steps))
        self.overview.hovered.connect(lambda *_: self.cursor_moved.emit(None))
        self.overview.hide()
        for kind, pane in self.panes.items():
            pane.crosshair_requested.connect(self._on_crosshair)
            pane.scroll_requested.connect(self._on_scroll)
            pane.window_dragged.connect(lambda dx, dy, k=kind: self._on_window_drag(dx, dy, k))
            pane.zoomed.connect(self._on_zoomed)
            pane.double_clicked.connect(self.toggle_single)
            pane.hovered.connect(self._on_hover)
            pane.canvas.sigKeyPressed.connect(lambda ev, p=pane: self._on_key(p.name, ev))
            pane.vb.sigRangeChanged.connect(lambda *_, p=pane: self._update_annotations(PlaneKind(p.name)))

        self.slab_mode = QComboBox()
        self.slab_mode.addItem("Thin", None)
        for mode in SlabMode:
            self.slab_mode.addItem(SLAB_NAMES[mode], mode)
        self.slab_mode.setToolTip(
            "Thick-slab reformat: maximum (MIP), minimum (MinIP) or average over the slab"
        )
        self.slab_thickness = QDoubleSpinBox()
        self.slab_thickness.setRange(1.0, 100.0)
        self.slab_thickness.setDecimals(1)
        self.slab_thickness.setValue(10.0)
        self.slab_thickness.setSuffix(" mm")
        self.slab_thickness.setToolTip("Slab thickness (mm, centred on the plane)")
        self.slab_mode.currentIndexChanged.connect(self._on_slab_controls)
        self.slab_thickness.valueChanged.connect(self._on_slab_controls)
        self.legend = QLabel("")
        self.legend.setObjectName("mpr-legend")
        self.legend.setWordWrap(True)
        self.legend.setStyleSheet("color: #b0b0b0; font-size: 11px;")
        self.legend.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

        bar = QHBoxLayout()
        bar.setContentsMargins(8, 2, 8, 2)
        bar.addWidget(QLabel("Slab"))
        bar.addWidget(self.slab_mode)
        bar.addWidget(self.slab_thickness)
        bar.addSpacing(12)
        bar.addWidget(self.legend, 1)
        panes = QGridLayout()
        panes.setContentsMargins(0, 0, 0, 0)
        panes.setSpacing(2)
        self._grid = panes
        self._place_panes()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(bar)
        layout.addLayout(panes, 1)
        self._on_slab_controls()
        self.clear(WAITING)

    # -- content ----------------------------------------------------------------------------------------------

    def set_volume(self, volume: Volume | None, slice_index: int = 0, title: str = "") -> None:
        """Show ``volume``'s planes through the centre of acquired slice ``slice_index``; None clears."""
        self.volume = volume
        self.images.clear()
        self._depths.clear()
        self._title = title
        if volume is None:
            self.reformat = None
            self.clear(WAITING)
            return
        try:
            self.reformat = Reformatter.of(volume)
        except ValueError as err:
            self.reformat = None
            self.clear(f"No reformats of this series: {err}.")
            return
        for kind, pane in self.panes.items():
            pane.canvas.annotations.message = ""
            pane.canvas.annotations.edges = self.reformat.layout.axes[kind].edge_letters()
            pane.fit_rect = self._full_rect(kind)
        self._nearest = None
        self._pane_windows.clear()
        self.overview.canvas.annotations.message = ""
        self.overview.canvas.annotations.edges = self.reformat.layout.axes[PlaneKind.CORONAL].edge_letters()
        self.overview.fit_rect = self._full_rect(PlaneKind.CORONAL)
        self._overview_for = None
        if self.arrangement == GRID:
            self._render_overview()
        self._make_strips()
        index = min(max(int(slice_index), 0), volume.n_slices - 1)
        self.set_point(self.reformat.slice_point(index))
        self.fit()

    def clear(self, message: str = "") -> None:
        """No planes; ``message`` in each pane."""
        for pane in (*self.panes.values(), self.overview):
            pane.clear(message)
            pane.canvas.annotations.corners = {}
            pane.canvas.annotations.edges = {}
        self._overview_for = None
        self._update_legend()

    def set_window(self, center: float, width: float) -> None:
        """The shared window (modality units)."""
        self.center, self.width = float(center), max(MIN_WIDTH, float(width))
        self._pane_windows.clear()
        self._apply_levels()

    def set_invert(self, invert: bool) -> None:
        """Black and white swapped, or not."""
        self.invert = bool(invert)
        self._apply_levels()

    def set_slab(self, slab: Slab | None) -> None:
        """Thick-slab mode of all three planes (None: thin planes)."""
        self.slab = slab if slab is not None and slab.thickness > 0 else None
        self.images.clear()
        self._render_all()

    def set_overlay(
        self,
        source: Callable[[int], np.ndarray | None] | None,
        lut: np.ndarray | None = None,
        opacity: float = 0.5,
    ) -> None:
        """Per-acquired-slice maps (uint8 0–255 per slice, None where none) drawn over the planes; None hides."""
        self._overlay = source
        self._overlay_lut = lut
        self._overlay_opacity = float(opacity)
        for kind in self.images:
            self._render_overlay(kind)
        self._update_legend()

    def set_evidence(self, evidence: Evidence | None) -> None:
        """The per-slice strip and key-slice ticks of the coronal and sagittal panes (None removes them)."""
        self._evidence = evidence
        self._make_strips()

    def _on_slab_controls(self, *_: object) -> None:
        mode = self.slab_mode.currentData()
        self.slab_thickness.setEnabled(mode is not None)
        slab = Slab(SlabMode(mode), self.slab_thickness.value()) if mode is not None else None
        if slab != self.slab:
            self.set_slab(slab)

    # -- the crosshair point ----------------------------------------------------------------------------------

    def depth(self, kind: PlaneKind) -> float:
        """Where plane ``kind`` is (mm along its normal)."""
        return self._depths.get(PlaneKind(kind), 0.0)

    def set_point(self, point: np.ndarray) -> None:
        """Move the crosshair to a patient point: each plane goes to its scroll position nearest it."""
        reformat = self.reformat
        if reformat is None:
            return
        layout = reformat.layout
        p = np.asarray(point, dtype=np.float64)
        snapped = np.zeros(3)
        depths = {}
        for kind in PlaneKind:
            w = layout.axes[kind].w
            depths[kind] = layout.snap(kind, float(p @ w))
            snapped += w * depths[kind]
        self.point = snapped
        for kind in PlaneKind:
            if kind not in self.images or depths[kind] != self._depths.get(kind):
                self._depths[kind] = depths[kind]
                self._render(kind)
        for kind, pane in self.panes.items():
            x, y, _ = layout.axes[kind].to_view(self.point)
            pane.set_crosshair(x, y)
            self._update_annotations(kind)
        x, y, _ = layout.axes[PlaneKind.CORONAL].to_view(self.point)
        self.overview.set_crosshair(x, y)
        self.point_changed.emit(self.point.copy())
        nearest = reformat.nearest_slice(self.point)
        if nearest is not None and nearest != self._nearest:
            self._nearest = nearest
            self.slice_changed.emit(nearest)

    @property
    def nearest_slice(self) -> int | None:
        """The acquired slice nearest the crosshair."""
        return self._nearest

    def go_to_slice(self, k: int) -> None:
        """Move the crosshair along the slice normal onto acquired slice ``k`` (the axial view scrolled)."""
        reformat = self.reformat
        if reformat is None or k == self._nearest or not 0 <= k < reformat.frame.n_slices:
            return
        frame, layout = reformat.frame, reformat.layout
        target = self.point + frame.normal * (frame.distances[k] - self.point @ frame.normal)
        # The plane most across the slices scrolls by slice spacing: take its position that lands on slice k.
        kind = max(PlaneKind, key=lambda kd: abs(float(layout.axes[kd].w @ frame.normal)))
        w = layout.axes[kind].w
        depths = layout.depths(kind)
        for depth in depths[np.argsort(np.abs(depths - target @ w))][:3]:
            candidate = target + w * (depth - target @ w)
            if reformat.nearest_slice(candidate) == k:
                target = candidate
                break
        self.set_point(target)

    def scroll(self, kind: PlaneKind, steps: int) -> None:
        """Move plane ``kind`` by ``steps`` scroll positions (its line moves in the other planes)."""
        reformat = self.reformat
        if reformat is None:
            return
        kind = PlaneKind(kind)
        w = reformat.layout.axes[kind].w
        current = float(self.point @ w)
        target = reformat.layout.step(kind, current, steps)
        self.set_point(self.point + w * (target - current))

    def click(self, kind: PlaneKind, x: float, y: float) -> None:
        """The crosshair to view (x, y) mm of plane ``kind``."""
        if self.reformat is None:
            return
        kind = PlaneKind(kind)
        axes = self.reformat.layout.axes[kind]
        self.set_point(axes.from_view(x, y, float(self.point @ axes.w)))

    # -- layout -----------------------------------------------------------------------------------------------

    def toggle_single(self, name: str) -> None:
        """Show pane ``name`` alone, or all again when it already is ("" : all again)."""
        kind = PlaneKind(name) if name else None
        self.single = None if kind is None or self.single == kind else kind
        self._show_panes()
        self.single_changed.emit(self.single.value if self.single is not None else "")

    def set_arrangement(self, name: str) -> None:
        """:data:`ROW` (1 × 3) or :data:`GRID` (2 × 2 with the overview)."""
        name = GRID if name == GRID else ROW
        if name == self.arrangement:
            return
        self.arrangement = name
        self._place_panes()
        if name == GRID:
            self._render_overview()
        # Fit again once the grid has given the panes their new sizes (a fit during the move crops them).
        QTimer.singleShot(0, self._refit)
        if self.single is not None:
            self.toggle_single("")
        else:
            self._show_panes()

    def _place_panes(self) -> None:
        grid = self._grid
        for pane in (*self.panes.values(), self.overview):
            grid.removeWidget(pane)
        for kind, (row, column) in _PLACES[self.arrangement].items():
            grid.addWidget(self.panes[kind], row, column)
        if self.arrangement == GRID:
            grid.addWidget(self.overview, 1, 1)
        for i in range(3):
            grid.setColumnStretch(i, 1 if i < (2 if self.arrangement == GRID else 3) else 0)
            grid.setRowStretch(i, 1 if i < (2 if self.arrangement == GRID else 1) else 0)
        self._show_panes()

    def _refit(self) -> None:
        for pane in (*self.panes.values(), self.overview):
            if not pane.zoomed_by_user:
                pane.fit()

    def _show_panes(self) -> None:
        for k, pane in self.panes.items():
            pane.setVisible(self.single is None or k == self.single)
        self.overview.setVisible(self.single is None and self.arrangement == GRID)

    def fit(self) -> None:
        """Every pane fitted to its plane."""
        for pane in self.panes.values():
            pane.fit()
        self.overview.fit()

    def _full_rect(self, kind: PlaneKind) -> QRectF:
        assert self.reformat is not None
        grid = self.reformat.grid(kind, float(self.reformat.layout.depths(kind)[0]))
        return QRectF(*grid.rect())

    # -- drawing ----------------------------------------------------------------------------------------------

    def pane_window(self, kind: PlaneKind | None = None) -> tuple[float, float]:
        """(center, width) of pane ``kind`` (the shared window while linked, or for None)."""
        if kind is not None and not self.linked and kind in self._pane_windows:
            return self._pane_windows[kind]
        return self.center, self.width

    def _levels(self, kind: PlaneKind | None = None) -> tuple[tuple[float, float], np.ndarray | None]:
        center, width = self.pane_window(kind)
        lo = center - width / 2.0
        return (lo, lo + width), (INVERT_LUT if self.invert else None)

    def _apply_levels(self) -> None:
        for kind in self.images:
            self.panes[kind].set_levels(*self._levels(kind))
            self._update_annotations(kind)
        if self._overview_for is not None:
            self.overview.set_levels(self._overview_levels, INVERT_LUT if self.invert else None)

    def _render_all(self) -> None:
        if self.reformat is None:
            return
        for kind in PlaneKind:
            self._render(kind)
            self._update_annotations(kind)

    def _render(self, kind: PlaneKind) -> None:
        """Compute and show plane ``kind`` at its depth, with its overlay and strip."""
        volume, reformat = self.volume, self.reformat
        if volume is None or reformat is None:
            return
        image = reformat.plane(volume.array, kind, self._depths[kind], slab=self.slab)
        self.images[kind] = image
        levels, lut = self._levels(kind)
        self.panes[kind].set_image(image.data, QRectF(*image.grid.rect()), levels, lut)
        self._render_overlay(kind)

    def _render_overlay(self, kind: PlaneKind) -> None:
        pane, image, reformat = self.panes[kind], self.images.get(kind), self.reformat
        if self._overlay is None or image is None or reformat is None:
            pane.set_overlay(None, QRectF())
            return
        maps = reformat.plane(self._overlay, kind, self._depths[kind], normal="nearest", fill=0.0)
        pane.set_overlay(
            maps.data, QRectF(*maps.grid.rect()), lut=self._overlay_lut, opacity=self._overlay_opacity
        )

    def _render_overview(self) -> None:
        """The coronal average projection of the stack (once per volume), NaN (outside the stack) skipped."""
        volume, reformat = self.volume, self.reformat
        if volume is None or reformat is None or self._overview_for is volume:
            return
        depths = reformat.layout.depths(PlaneKind.CORONAL)
        picks = depths[np.unique(np.linspace(0, len(depths) - 1, OVERVIEW_PLANES).round().astype(int))]
        total: np.ndarray | None = None
        count: np.ndarray | None = None
        for depth in picks:
            data = reformat.plane(volume.array, PlaneKind.CORONAL, float(depth)).data
            valid = ~np.isnan(data)
            if total is None or count is None:
                total, count = np.zeros(data.shape, np.float64), np.zeros(data.shape, np.int32)
            total += np.where(valid, data, 0.0)
            count += valid
        if total is None or count is None:
            return
        image = np.full(total.shape, np.nan, np.float32)
        np.divide(total, count, out=image, where=count > 0, casting="unsafe")
        grid = reformat.grid(PlaneKind.CORONAL, float(picks[0]))
        # Its own window: an average over the head (air and bone included) is far from the brain window.
        center, width = robust_window(image)
        self._overview_levels = (center - width / 2.0, center + width / 2.0)
        self.overview.set_image(
            image, QRectF(*grid.rect()), self._overview_levels, INVERT_LUT if self.invert else None
        )
        self.overview.canvas.annotations.corners = {"tl": [OVERVIEW_NOTE]}
        self._overview_for = volume
        self.overview.fit()

    def _make_strips(self) -> None:
        """The strip of each plane from the evidence and the slices' bands (once per volume or result)."""
        reformat, evidence = self.reformat, self._evidence
        self._strips = {}
        colours = [track_colour(float(v), 1.0) for v in evidence.values] if evidence is not None else []
        for kind, pane in self.panes.items():
            bands = reformat.slice_bands(kind) if reformat is not None else None
            strip = None
            if bands is not None and evidence is not None and len(evidence.values) == len(bands.lo):
                strip = Strip(bands.axis, bands.lo, bands.hi, colours, list(evidence.keys), evidence.text)
            self._strips[kind] = strip
            pane.set_strip(strip)
        self.overview.set_strip(self._strips.get(PlaneKind.CORONAL))

    def _update_annotations(self, kind: PlaneKind) -> None:
        pane, reformat, image = self.panes[kind], self.reformat, self.images.get(kind)
        if reformat is None or image is None:
            return
        a = pane.canvas.annotations
        axes = reformat.layout.axes[kind]
        depth = self._depths[kind]
        letter = direction_letters(axes.w if depth >= 0 else -axes.w, max_letters=1)
        position = [f"{letter} {abs(depth):.1f} mm"]
        if reformat.layout.parallel(kind) and self._nearest is not None:
            position.append(f"Im {self._nearest + 1}/{reformat.frame.n_slices}")
        center, width = self.pane_window(kind)
        a.corners = {
            "tl": [TITLES[kind], self._title] if self._title else [TITLES[kind]],
            "bl": position + image.notes,
            "br": [
                f"W {width:.0f}  L {center:.0f}" + ("  inv" if self.invert else ""),
                f"{pane.mm_per_pixel():.2f} mm/px",
            ],
        }
        pane.canvas.scale_bar_mm_per_px = pane.mm_per_pixel()
        pane.canvas.viewport().update()

    def _update_legend(self) -> None:
        self.legend.setText(SALIENCY_NOTE + "." if self._overlay is not None else "")

    # -- gestures ---------------------------------------------------------------------------------------------

    def _on_crosshair(self, name: str, x: float, y: float) -> None:
        self.click(PlaneKind(name), x, y)

    def _on_scroll(self, name: str, steps: int) -> None:
        self.scroll(PlaneKind(name), steps)

    def _on_key(self, name: str, ev: QKeyEvent) -> None:
        steps = {Qt.Key.Key_Up: -1, Qt.Key.Key_Down: 1, Qt.Key.Key_PageUp: -10, Qt.Key.Key_PageDown: 10}
        step = steps.get(Qt.Key(ev.key()))
        if step is not None:
            self.scroll(PlaneKind(name), step)
            ev.accept()

    def _on_window_drag(self, dx: float, dy: float, kind: PlaneKind | None = None) -> None:
        if self.reformat is None:
            return
        center, width = self.pane_window(kind)
        sensitivity = max(0.25, width / 300.0)
        center, width = center + dy * sensitivity, max(MIN_WIDTH, width + dx * sensitivity)
        if not self.linked and kind is not None:
            self._pane_windows[kind] = (center, width)
            self.panes[kind].set_levels(*self._levels(kind))
            self._update_annotations(kind)
            return
        self.set_window(center, width)
        self.window_changed.emit(self.center, self.width)

    def set_linked(self, linked: bool) -> None:
        """Window/level and zoom shared by the panes (True) or each pane's own (False)."""
        self.linked = bool(linked)
        if self.linked:
            self._pane_windows.clear()
            self._apply_levels()

    def _on_zoomed(self, name: str) -> None:
        if not self.linked:
            self._update_annotations(PlaneKind(name))
            return
        scale = self.panes[PlaneKind(name)].mm_per_pixel()
        for kind, pane in self.panes.items():
            if kind.value != name:
                pane.set_scale(scale)

    def _on_hover(self, name: str, where: tuple[float, float] | None) -> None:
        reformat, volume = self.reformat, self.volume
        kind = PlaneKind(name)
        image = self.images.get(kind)
        if where is None or reformat is None or volume is None or image is None:
            self.cursor_moved.emit(None)
            return
        point = reformat.layout.axes[kind].from_view(where[0], where[1], self._depths[kind])
        row, col = image.grid.pixel_of(point)
        voxel = reformat.frame.patient_to_voxel(point)
        value = reformat.value_at(volume.array, point)
        self.cursor_moved.emit(
            CursorInfo(
                int(round(voxel[0])) if voxel is not None else -1,
                int(round(row)),
                int(round(col)),
                value,
                volume.units,
                tuple(float(c) for c in point),
                f"{TITLES[kind].lower()} reformat",
            )
        )
