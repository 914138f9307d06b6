"""The image area's layouts: 1 × 1 (the acquired slices, :class:`~viewer.ui.image_view.ImageView`), 1 × 3
(axial, coronal and sagittal reformats, :class:`~viewer.ui.mpr_view.MprView`) and 2 × 2 (the same three and an
overview), switched from the toolbar, the View menu and Ctrl+1 / Ctrl+3 / Ctrl+2.

The image view stays the owner of the series' window, invert and current slice (what the analysis, the export and
the menus already act on); the reformats follow it and report back to it: W/L dragged in a pane goes to the image
view, the slice nearest the crosshair becomes its current slice, and its slice changes (the analysis' slice list,
cine) move the crosshair. Reformats are computed only while a reformat layout is on screen.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QStackedWidget, QWidget

from viewer.analysis.result import AnalysisResult
from viewer.dicom.volume import Volume
from viewer.ui.image_view import ImageView
from viewer.ui.mpr_view import GRID, ROW, Evidence, MprView
from viewer.ui.saliency_overlay import SaliencyOverlay

SINGLE = "1x1"
THREE = ROW
QUAD = GRID
LAYOUTS = (SINGLE, THREE, QUAD)
#: How long (ms) the crosshair must rest before the image view (and the analysis panel) follow its slice.
SLICE_SYNC_MS = 60


class LayoutController(QObject):
    """The stacked image area and the layout actions. ``layout_changed(name)``: one of :data:`LAYOUTS`."""

    layout_changed = Signal(str)

    def __init__(self, view: ImageView, volume: Callable[[], Volume | None], parent: QWidget) -> None:
        super().__init__(parent)
        self.view = view
        self._volume = volume
        self.mpr = MprView()
        self.widget = QStackedWidget()
        self.widget.addWidget(view)
        self.widget.addWidget(self.mpr)
        self.current = SINGLE
        self._shown_volume: Volume | None = None
        self._overlay: SaliencyOverlay | None = None
        self._result: Callable[[], AnalysisResult | None] = lambda: None
        self._pending_slice: int | None = None
        self._slice_timer = QTimer(self)
        self._slice_timer.setSingleShot(True)
        self._slice_timer.setInterval(SLICE_SYNC_MS)
        self._slice_timer.timeout.connect(self._sync_view_slice)

        group = QActionGroup(self)
        self.single_action = QAction("Layout 1×1", parent)
        self.single_action.setShortcut(QKeySequence("Ctrl+1"))
        self.single_action.setStatusTip("One view of the acquired slices (Ctrl+1)")
        self.three_action = QAction("Layout 1×3 (MPR)", parent)
        self.three_action.setShortcut(QKeySequence("Ctrl+3"))
        self.three_action.setStatusTip("Axial, coronal and sagittal reformats in true geometry (Ctrl+3)")
        self.quad_action = QAction("Layout 2×2 (MPR + overview)", parent)
        self.quad_action.setShortcut(QKeySequence("Ctrl+2"))
        self.quad_action.setStatusTip(
            "The three reformats and an overview of the whole stack with the per-slice strip (Ctrl+2)"
        )
        self._layout_actions = {SINGLE: self.single_action, THREE: self.three_action, QUAD: self.quad_action}
        for name, action in self._layout_actions.items():
            action.setCheckable(True)
            action.setActionGroup(group)
            action.triggered.connect(lambda _=False, n=name: self.set_layout(n))
        self.single_action.setChecked(True)
        self.actions = [self.single_action, self.three_action, self.quad_action]

        view.window_changed.connect(self.mpr.set_window)
        view.slice_changed.connect(self._on_view_slice)
        self.mpr.window_changed.connect(view.set_window)
        self.mpr.slice_changed.connect(self._on_mpr_slice)

    # -- wiring -----------------------------------------------------------------------------------------------

    def attach_evidence(self, overlay: SaliencyOverlay, result: Callable[[], AnalysisResult | None]) -> None:
        """Follow the analysis on screen: its saliency maps (``overlay``) and its per-slice values (``result()``)."""
        self._overlay = overlay
        self._result = result
        overlay.changed.connect(self._update_evidence)

    def on_series_changed(self, _uid: str = "") -> None:
        """Another series, or its volume finished loading: the reformats follow if they are on screen."""
        self._shown_volume = None
        if self.mpr_shown:
            self._show_volume()
        else:  # drop the reformats' hold on the old volume (the cache decides what stays in memory)
            self.mpr.set_volume(None)

    # -- layout -----------------------------------------------------------------------------------------------

    @property
    def mpr_shown(self) -> bool:
        """Whether a reformat layout (1 × 3 or 2 × 2) is on screen."""
        return self.current in (THREE, QUAD)

    def set_layout(self, name: str) -> None:
        """Switch to one of :data:`LAYOUTS` (anything else: :data:`SINGLE`)."""
        name = name if name in LAYOUTS else SINGLE
        for layout, action in self._layout_actions.items():
            action.setChecked(layout == name)
        if name == self.current:
            return
        was_mpr = self.mpr_shown
        self.current = name
        if name in (THREE, QUAD):
            self.mpr.set_arrangement(name)
            if not was_mpr:
                self.view.stop_cine()
                self.widget.setCurrentWidget(self.mpr)
            self._show_volume()
        else:
            self._slice_timer.stop()
            self._sync_view_slice()
            self.widget.setCurrentWidget(self.view)
        self.layout_changed.emit(name)

    def _show_volume(self) -> None:
        volume = self._volume()
        if volume is self._shown_volume and volume is not None:
            return
        self._shown_volume = volume
        display = self.view.display
        title = display.series_title if display is not None else ""
        self.mpr.set_window(self.view.center, self.view.width)
        self.mpr.set_invert(self.view.invert)
        self.mpr.set_volume(volume, self.view.index, title)
        self._update_evidence()

    # -- view commands that act on the layout on screen -------------------------------------------------------

    def toggle_invert(self) -> None:
        """I: swap black and white (both layouts)."""
        self.view.toggle_invert()
        self.mpr.set_invert(self.view.invert)

    def reset_view(self) -> None:
        """R: fit, default window and inversion (both layouts)."""
        self.view.reset_view()
        self.mpr.set_invert(self.view.invert)
        self.mpr.set_window(self.view.center, self.view.width)
        self.mpr.fit()

    def fit(self) -> None:
        """F: fit the images of the layout on screen."""
        if self.mpr_shown:
            self.mpr.fit()
        else:
            self.view.fit()

    # -- slices -----------------------------------------------------------------------------------------------

    def _on_mpr_slice(self, k: int) -> None:
        self._pending_slice = k
        self._slice_timer.start()

    def _sync_view_slice(self) -> None:
        k, self._pending_slice = self._pending_slice, None
        if k is not None and k != self.view.index:
            self.view.set_slice(k)

    def _on_view_slice(self, k: int) -> None:
        if self.mpr_shown and self._pending_slice is None:
            self.mpr.go_to_slice(k)

    # -- evidence ---------------------------------------------------------------------------------------------

    def _update_evidence(self) -> None:
        overlay = self._overlay
        if overlay is not None and overlay.active and overlay.enabled:
            self.mpr.set_overlay(overlay.map_of, overlay.lut(), overlay.opacity)
        else:
            self.mpr.set_overlay(None)
        result = self._result()
        volume = self.mpr.volume
        if result is None or volume is None or len(result.slice_probabilities) != volume.n_slices:
            self.mpr.set_evidence(None)
            return
        self.mpr.set_evidence(
            Evidence(
                result.slice_probabilities,
                list(result.key_slices),
                "Strip: bleed probability per acquired slice (warm = higher); ticks: key slices",
            )
        )
