"""The Analysis dock: the finding, its warnings, and the per-slice evidence as plots on one shared slice axis.

Every plot has x = slice number as the viewer shows it (1 … n, slice ``k`` of the volume at x = k + 1), a white
cursor at the slice on screen, and amber dashed lines at the key slices. Clicking a plot (or dragging its cursor)
asks for that slice through ``slice_clicked``. The panel only displays; :class:`~viewer.ui.analysis_controller.
AnalysisController` decides what to show and when.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from pyqtgraph.GraphicsScene.mouseEvents import MouseClickEvent
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from viewer.analysis.display import (
    HIDDEN_AXIS,
    HIDDEN_OVERSHOOT,
    SCALING_NAMES,
    SCALINGS,
    format_contribution,
    hidden_axis,
)
from viewer.analysis.result import STUDY_ONLY, AnalysisResult
from viewer.model.intended_use import UseWarning
from viewer.model.misses import misses_sentence
from viewer.ui import theme

AXIS_WIDTH = 46
PLOT_BACKGROUND = theme.BASE
AXIS_COLOUR = "#9a9a9a"
CURSOR_COLOUR = "#ffffff"
KEY_COLOUR = "#e0b050"
PROBABILITY_COLOUR = "#ff8a65"
Z_COLOUR = "#4fc3f7"
R_COLOUR = "#ce93d8"
FORWARD_COLOUR = "#64b5f6"
REVERSE_COLOUR = "#f48fb1"
COMBINED_COLOUR = "#ffb74d"
DIRECT_COLOUR = "#aed581"
CARRIED_COLOUR = "#b39ddb"
POSITIVE_COLOUR = "#ff7a6b"
NEGATIVE_COLOUR = "#8fd19e"
AMBER_BOX = "QLabel { background: #3a2e10; border: 1px solid #e0b050; border-radius: 4px; color: #f3dfa6; padding: 6px; }"

#: The heatmap's choices: key in ``result.gate_matrices`` → what the combo says.
MATRIX_CHOICES: tuple[tuple[str, str], ...] = (
    ("z_forward", "update gate z · forward (slice 1 → last)"),
    ("z_reverse", "update gate z · reverse (last → slice 1)"),
    ("r_forward", "reset gate r · forward (slice 1 → last)"),
    ("r_reverse", "reset gate r · reverse (last → slice 1)"),
)

#: The hidden-state plot's choices: what the combo says → the tracks drawn (key in ``result.hidden_saliency``,
#: legend name, colour, dashed).
HIDDEN_CHOICES: dict[str, tuple[str, tuple[tuple[str, str, str, bool], ...]]] = {
    "directions": (
        "per reader",
        (
            ("forward", "forward", FORWARD_COLOUR, False),
            ("reverse", "reverse", REVERSE_COLOUR, True),
            ("combined", "combined", COMBINED_COLOUR, False),
        ),
    ),
    "parts": (
        "direct vs carried",
        (
            ("combined_direct", "direct", DIRECT_COLOUR, False),
            ("combined_carried", "carried", CARRIED_COLOUR, True),
            ("combined", "combined", COMBINED_COLOUR, False),
        ),
    ),
}
HIDDEN_TOOLTIP = (
    "Per reader: forward reads slice 1 → last, reverse last → 1; combined is their sum.\n"
    "Direct vs carried: the combined track split into what the slice's own read-out uses (direct) and what the "
    "readers' memory passes on to the slices read later (carried)."
)

DISCLAIMER = (
    "Research software. The default model learned from synthetic phantoms; it is not for diagnosis. "
    "Help ▸ How to Read the Analysis explains every plot."
)


def format_probability(p: float) -> str:
    """Two decimals; two significant digits below 0.1 (a low threshold must not read as 0.03); three above 0.99."""
    if p >= 0.99:
        return f"{p:.3f}"  # 0.9987 is not 1.00
    return f"{p:.2f}" if p >= 0.1 else f"{p:.2g}"


def hidden_words(value: float) -> str:
    """A slice's hidden-state contribution as the slice line says it: with its sign (+ towards bleed), in logit
    units (the plot's heading and the line's tooltip name them)."""
    return f"hidden-state evidence {format_contribution(value)}"


def _heading(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setStyleSheet(f"color: {theme.TEXT}; margin-top: 6px;")
    return label


def _gradient_pixmap(lut: np.ndarray, width: int = 90, height: int = 10) -> QPixmap:
    idx = np.linspace(0, len(lut) - 1, width).round().astype(int)
    pixels = np.ascontiguousarray(np.repeat(lut[idx, :3][None], height, axis=0).astype(np.uint8))
    image = QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())


class SlicePlot(pg.PlotWidget):
    """A plot over the slice axis with a cursor line and key-slice marks; clicks ask for a slice."""

    slice_clicked = Signal(int)

    def __init__(
        self, y_label: str, y_range: tuple[float, float] | None = (0.0, 1.0), height: int = 120
    ) -> None:
        super().__init__(background=PLOT_BACKGROUND)
        item = self.getPlotItem()
        item.setMenuEnabled(False)
        item.hideButtons()
        self.setMouseEnabled(x=False, y=False)
        item.getViewBox().setMouseEnabled(x=False, y=False)
        style = {"color": AXIS_COLOUR, "font-size": "9pt"}
        item.setLabel("left", y_label, **style)
        item.setLabel("bottom", "slice", **style)
        for name in ("left", "bottom"):
            axis = item.getAxis(name)
            axis.setPen(pg.mkPen(AXIS_COLOUR))
            axis.setTextPen(pg.mkPen(AXIS_COLOUR))
        item.getAxis("left").setWidth(AXIS_WIDTH)
        item.showGrid(x=True, y=True, alpha=0.12)
        if y_range is not None:
            item.setYRange(
                *y_range, padding=0.1
            )  # room for the 0 and 1 labels, which pyqtgraph drops at the edge
            item.enableAutoRange(axis="y", enable=False)
            low, high = y_range
            item.getAxis("left").setTicks([[(v, f"{v:g}") for v in (low, (low + high) / 2, high)], []])
        item.enableAutoRange(axis="x", enable=False)
        self.cursor = pg.InfiniteLine(
            pos=1,
            angle=90,
            movable=True,
            pen=pg.mkPen(CURSOR_COLOUR, width=1.5),
            hoverPen=pg.mkPen(CURSOR_COLOUR, width=3),
        )
        self.cursor.setZValue(100)
        self.cursor.sigDragged.connect(lambda line: self.slice_clicked.emit(round(line.value()) - 1))
        item.addItem(self.cursor, ignoreBounds=True)
        self._marks: list[pg.InfiniteLine] = []
        self.scene().sigMouseClicked.connect(self._on_click)
        self.setFixedHeight(height)

    @property
    def plot_item(self) -> pg.PlotItem:
        """The plot's :class:`pyqtgraph.PlotItem`."""
        return self.getPlotItem()

    def add_legend_below(self, columns: int) -> pg.LegendItem:
        """A legend in its own row under the slice axis, so it never hides a curve."""
        legend = pg.LegendItem(colCount=columns, labelTextColor=theme.TEXT, labelTextSize="8pt")
        self.plot_item.layout.addItem(legend, 4, 1)
        self.plot_item.layout.setAlignment(legend, Qt.AlignmentFlag.AlignHCenter)
        return legend

    def set_slices(self, n: int) -> None:
        """Show slices 1 … ``n`` on the x axis and bound the cursor to them."""
        self.plot_item.setXRange(0.5, n + 0.5, padding=0.0)
        self.cursor.setBounds((1, max(1, n)))

    def set_cursor(self, k: int) -> None:
        """Put the cursor at slice ``k`` (0-based) without emitting ``slice_clicked``."""
        self.cursor.blockSignals(True)
        self.cursor.setValue(k + 1)
        self.cursor.blockSignals(False)

    def set_key_slices(self, indices: list[int]) -> None:
        """Mark these 0-based slices with dashed amber lines (replacing earlier marks)."""
        for line in self._marks:
            self.plot_item.removeItem(line)
        self._marks = []
        for k in indices:
            line = pg.InfiniteLine(
                pos=k + 1,
                angle=90,
                movable=False,
                pen=pg.mkPen(KEY_COLOUR, width=1, style=Qt.PenStyle.DashLine),
            )
            line.setZValue(50)
            self.plot_item.addItem(line, ignoreBounds=True)
            self._marks.append(line)

    def slice_at(self, scene_pos: QPointF) -> int | None:
        """The 0-based slice under a scene position, or None outside the plot area."""
        vb = self.plot_item.getViewBox()
        if not vb.sceneBoundingRect().contains(scene_pos):
            return None
        return round(vb.mapSceneToView(scene_pos).x()) - 1

    def _on_click(self, ev: MouseClickEvent) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        k = self.slice_at(ev.scenePos())
        if k is not None:
            ev.accept()
            self.slice_clicked.emit(k)


class ResultsPanel(QWidget):
    """Shows one :class:`~viewer.analysis.result.AnalysisResult`, or why there is none.

    Signals: ``slice_clicked(int)`` (0-based slice), ``analyze_requested()``, ``overlay_toggled(bool)``,
    ``opacity_changed(float)``, ``threshold_changed(float)``, ``scaling_changed(str)`` (``"series"`` or
    ``"slice"``).
    """

    slice_clicked = Signal(int)
    analyze_requested = Signal()
    overlay_toggled = Signal(bool)
    opacity_changed = Signal(float)
    threshold_changed = Signal(float)
    scaling_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: AnalysisResult | None = None
        self.state = "empty"
        self._n = 0
        self._index = 0
        self._build_state()
        self._build_finding()
        self.overlay_box = self._build_overlay_controls()
        self._build_probability_plot()
        self._build_gate_plot()
        matrix_row = self._build_heatmap()
        self._build_saliency_plot()
        self._link_plots()
        self.result_widget = self._build_result_body(matrix_row)
        self._build_layout()
        self.setMinimumWidth(380)
        self.show_empty()

    # -- building -----------------------------------------------------------------------------------------------

    def _build_state(self) -> None:
        """What shows when there is no result: a state line and the Analyze button."""
        self.state_label = QLabel()
        self.state_label.setWordWrap(True)
        self.state_label.setStyleSheet(f"color: {theme.TEXT}; font-size: 14px; padding: 6px 0px;")
        self.analyze_button = QPushButton("Analyze Series  (Ctrl+R)")
        self.analyze_button.setToolTip("Run the slice-GRU model on the series on screen")
        self.analyze_button.clicked.connect(self.analyze_requested)

    def _build_finding(self) -> None:
        """The finding, its probability, warnings, device notice, run info, key slices and the slice line."""
        self.finding_label = QLabel()
        self.finding_label.setStyleSheet("font-size: 22px; font-weight: bold;")
        self.probability_label = QLabel()
        self.probability_label.setStyleSheet(f"font-size: 15px; color: {theme.TEXT};")
        self.probability_label.setWordWrap(True)
        self.misses_label = QLabel()
        self.misses_label.setWordWrap(True)
        self.misses_label.setStyleSheet(f"color: {theme.DIM_TEXT};")
        self.misses_label.hide()
        self.warnings_label = QLabel()
        self.warnings_label.setWordWrap(True)
        self.warnings_label.setTextFormat(Qt.TextFormat.RichText)
        self.warnings_label.setStyleSheet(AMBER_BOX)
        self.study_only_label = QLabel(STUDY_ONLY)
        self.study_only_label.setWordWrap(True)
        self.study_only_label.setStyleSheet(AMBER_BOX)
        self.study_only_label.hide()
        self.notice_label = QLabel()
        self.notice_label.setWordWrap(True)
        self.notice_label.setStyleSheet(AMBER_BOX)
        self.info_label = QLabel()
        self.info_label.setWordWrap(True)
        self.info_label.setStyleSheet(f"color: {theme.DIM_TEXT};")
        self.key_label = QLabel()
        self.key_label.setWordWrap(True)
        self.key_label.setTextFormat(Qt.TextFormat.RichText)
        self.key_label.linkActivated.connect(lambda href: self.slice_clicked.emit(int(href.split(":")[1])))
        self.slice_label = QLabel()
        self.slice_label.setWordWrap(True)
        self.slice_label.setStyleSheet(f"color: {theme.TEXT};")
        self.slice_label.setToolTip(
            "Hidden-state evidence in logit units: + pushes the study towards a bleed, − towards no bleed"
        )

    def _build_overlay_controls(self) -> QFrame:
        """The pixel-saliency overlay's switch, opacity and threshold."""
        overlay_box = QFrame()
        overlay_box.setFrameShape(QFrame.Shape.StyledPanel)
        grid = QGridLayout(overlay_box)
        grid.setContentsMargins(6, 4, 6, 4)
        self.overlay_check = QCheckBox("Pixel saliency over the image  (O)")
        self.overlay_check.setChecked(True)
        self.overlay_check.toggled.connect(self.overlay_toggled)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setToolTip("How opaque the colour map is")
        self.opacity_slider.valueChanged.connect(lambda v: self.opacity_changed.emit(v / 100.0))
        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(0, 95)
        self.threshold_slider.setToolTip("Pixels whose scaled saliency is below this stay transparent")
        self.threshold_slider.valueChanged.connect(self._on_threshold)
        self.threshold_value = QLabel()
        self.threshold_value.setMinimumWidth(32)
        self.scaling_combo = QComboBox()
        for key in SCALINGS:
            self.scaling_combo.addItem(SCALING_NAMES[key], key)
        self.scaling_combo.setToolTip(
            "Scaled to the series: each slice's map at the strength of its bleed probability, so a slice the "
            "model finds normal stays dark.\nScaled per slice: every slice shows its own strongest pixels at "
            "full strength, a normal one too."
        )
        self.scaling_combo.currentIndexChanged.connect(
            lambda _i: self.scaling_changed.emit(str(self.scaling_combo.currentData()))
        )
        grid.setVerticalSpacing(2)
        grid.addWidget(self.overlay_check, 0, 0, 1, 3)
        grid.addWidget(self.scaling_combo, 0, 3, 1, 2)
        grid.addWidget(QLabel("Opacity"), 1, 0)
        grid.addWidget(self.opacity_slider, 1, 1)
        grid.addWidget(QLabel("Threshold"), 1, 2)
        grid.addWidget(self.threshold_slider, 1, 3)
        grid.addWidget(self.threshold_value, 1, 4)
        return overlay_box

    def _build_probability_plot(self) -> None:
        """Slice probabilities with the operating threshold as a dashed line."""
        self.probability_plot = SlicePlot("probability", height=120)
        self.probability_curve = self.probability_plot.plot(
            pen=pg.mkPen(PROBABILITY_COLOUR, width=2), symbol="o", symbolSize=4, symbolPen=None,
            symbolBrush=PROBABILITY_COLOUR,
        )  # fmt: skip
        self.threshold_line = pg.InfiniteLine(
            pos=0.5, angle=0, movable=False, pen=pg.mkPen("#b0b0b0", width=1, style=Qt.PenStyle.DashLine)
        )
        self.probability_plot.plot_item.addItem(self.threshold_line, ignoreBounds=True)

    def _build_gate_plot(self) -> None:
        """Mean update and reset gates per slice, forward and reverse, with a legend."""
        self.gate_plot = SlicePlot("mean gate", height=148)
        self.gate_curves: dict[str, pg.PlotDataItem] = {}
        styles = {
            "z_mean_forward": (Z_COLOUR, Qt.PenStyle.SolidLine, "z forward"),
            "z_mean_reverse": (Z_COLOUR, Qt.PenStyle.DashLine, "z reverse"),
            "r_mean_forward": (R_COLOUR, Qt.PenStyle.SolidLine, "r forward"),
            "r_mean_reverse": (R_COLOUR, Qt.PenStyle.DashLine, "r reverse"),
        }
        self.gate_legend = self.gate_plot.add_legend_below(4)
        for key, (colour, style, name) in styles.items():
            curve = self.gate_plot.plot(pen=pg.mkPen(colour, width=2, style=style))
            self.gate_curves[key] = curve
            self.gate_legend.addItem(curve, name)

    def _build_heatmap(self) -> QHBoxLayout:
        """The unit × slice gate heatmap; returns its header row (matrix choice and colour scale)."""
        self.heatmap_plot = SlicePlot("GRU unit", y_range=None, height=128)
        self.heatmap_image = pg.ImageItem()
        self.heatmap_lut = pg.colormap.get("viridis").getLookupTable(0.0, 1.0, 256)
        self.heatmap_plot.plot_item.addItem(self.heatmap_image)
        self.heatmap_plot.plot_item.getAxis("left").setTicks(None)
        self.matrix_combo = QComboBox()
        self.matrix_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.matrix_combo.setMinimumContentsLength(16)
        for key, text in MATRIX_CHOICES:
            self.matrix_combo.addItem(text, key)
        self.matrix_combo.currentIndexChanged.connect(self._draw_matrix)
        colour_scale = QLabel()
        colour_scale.setPixmap(_gradient_pixmap(self.heatmap_lut))
        colour_scale.setToolTip("Gate value: 0 (dark blue) … 1 (yellow)")
        matrix_row = QHBoxLayout()
        matrix_row.addWidget(QLabel("<b>Gates per unit</b>"))
        matrix_row.addWidget(self.matrix_combo, 1)
        matrix_row.addWidget(QLabel("0"))
        matrix_row.addWidget(colour_scale)
        matrix_row.addWidget(QLabel("1"))
        return matrix_row

    def _build_saliency_plot(self) -> None:
        """The hidden-state track per slice on a fixed logit axis with a zero line; a combo picks per reader or
        direct vs carried."""
        self.saliency_plot = SlicePlot("logit", y_range=HIDDEN_AXIS, height=115)
        self.zero_line = pg.InfiniteLine(
            pos=0.0, angle=0, movable=False, pen=pg.mkPen("#b0b0b0", width=1, style=Qt.PenStyle.DotLine)
        )
        self.saliency_plot.plot_item.addItem(self.zero_line, ignoreBounds=True)
        self._set_hidden_axis(HIDDEN_AXIS)
        self.saliency_curves: dict[str, pg.PlotDataItem] = {}
        for _text, tracks in HIDDEN_CHOICES.values():
            for key, _name, colour, dashed in tracks:
                if key in self.saliency_curves:
                    continue
                style = Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine
                width = 2.5 if key == "combined" else 1.5
                self.saliency_curves[key] = self.saliency_plot.plot(
                    pen=pg.mkPen(colour, width=width, style=style)
                )
        self.hidden_legend = QLabel()
        self.hidden_legend.setTextFormat(Qt.TextFormat.RichText)
        self.hidden_legend.setStyleSheet(f"color: {theme.TEXT}; font-size: 11px;")
        self.hidden_combo = QComboBox()
        for mode, (text, _tracks) in HIDDEN_CHOICES.items():
            self.hidden_combo.addItem(text, mode)
        self.hidden_combo.setToolTip(HIDDEN_TOOLTIP)
        self.hidden_combo.currentIndexChanged.connect(lambda _i: self._draw_hidden())
        self._draw_hidden()

    def _set_hidden_axis(self, axis: tuple[float, float]) -> None:
        low, high = axis
        item = self.saliency_plot.plot_item
        item.setYRange(low, high, padding=0.15)
        labels = [(v, f"{v:+g}" if v else "0") for v in sorted({low, 0.0, high})]
        minor = [(v, "") for v in np.arange(low, high + 0.5, 1.0) if v not in (low, 0.0, high)]
        item.getAxis("left").setTicks([labels, minor])

    @property
    def hidden_mode(self) -> str:
        """``"directions"`` (forward, reverse, combined) or ``"parts"`` (combined direct, carried, combined)."""
        return str(self.hidden_combo.currentData())

    def _draw_hidden(self) -> None:
        """Show the tracks of the chosen mode (hide the others) and name them in the legend."""
        _text, tracks = HIDDEN_CHOICES[self.hidden_mode]
        shown = {key: name for key, name, _c, _d in tracks}
        result = self.result
        x = np.arange(1, self._n + 1, dtype=float)
        for key, curve in self.saliency_curves.items():
            values = result.hidden_saliency.get(key) if result is not None else None
            if key in shown and values is not None:
                curve.setData(x, np.asarray(values, dtype=float))
                curve.show()
            else:
                curve.setData([], [])
                curve.hide()
        self.hidden_legend.setText(
            " &nbsp; ".join(
                f"<span style='color: {colour};'>{'╍╍' if dashed else '━━'}</span>&nbsp;{name}"
                for _key, name, colour, dashed in tracks
            )
        )

    @property
    def hidden_legend_names(self) -> list[str]:
        """The names the hidden-state plot's legend shows, in order."""
        _text, tracks = HIDDEN_CHOICES[self.hidden_mode]
        return [name for _key, name, _c, _d in tracks]

    def _link_plots(self) -> None:
        """One slice axis for all plots; a click on any of them asks for that slice."""
        self.plots = [self.probability_plot, self.gate_plot, self.heatmap_plot, self.saliency_plot]
        for plot in self.plots:
            plot.slice_clicked.connect(self._on_plot_click)
            if plot is not self.probability_plot:
                plot.plot_item.setXLink(self.probability_plot.plot_item)

    def _build_result_body(self, matrix_row: QHBoxLayout) -> QWidget:
        """The result's widgets in reading order, each plot under its heading."""
        result_widget = QWidget()
        body = QVBoxLayout(result_widget)
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(4)
        body.addWidget(self.finding_label)
        body.addWidget(self.probability_label)
        body.addWidget(self.misses_label)
        body.addWidget(self.warnings_label)
        body.addWidget(self.notice_label)
        body.addWidget(self.info_label)
        body.addWidget(self.key_label)
        body.addWidget(self.overlay_box)
        body.addWidget(self.slice_label)
        body.addWidget(self.study_only_label)
        body.addWidget(
            _heading("<b>Slice probability</b> · dashed grey: operating threshold · amber: key slices")
        )
        body.addWidget(self.probability_plot)
        body.addWidget(
            _heading(
                "<b>Gates</b>, mean over units · <b>z</b> update gate: 1 = keep previous state · "
                "<b>r</b> reset gate: 1 = previous state enters the candidate · "
                "forward reads slice 1 → last, reverse last → 1"
            )
        )
        body.addWidget(self.gate_plot)
        body.addLayout(matrix_row)
        body.addWidget(self.heatmap_plot)
        self.hidden_heading = _heading(
            "<b>Hidden-state evidence</b>: how much each slice's memory adds to the finding "
            "(logit units; + towards bleed) · overshoots by ~10%"
        )
        self.hidden_heading.setToolTip(
            "Compared with the model's average normal head. Summed over slices and readers the values overshoot "
            f"the change of the study logit by {HIDDEN_OVERSHOOT} (a one-step estimate): read them as relative sizes."
        )
        body.addWidget(self.hidden_heading)
        body.addWidget(self.saliency_plot)
        hidden_row = QHBoxLayout()
        hidden_row.setContentsMargins(AXIS_WIDTH, 0, 0, 0)
        hidden_row.addWidget(self.hidden_legend, 1)
        hidden_row.addWidget(self.hidden_combo)
        body.addLayout(hidden_row)
        return result_widget

    def _build_layout(self) -> None:
        """State, button, result and disclaimer in one scrolling column."""
        disclaimer = QLabel(DISCLAIMER)
        disclaimer.setWordWrap(True)
        disclaimer.setStyleSheet(f"color: {theme.DIM_TEXT}; font-size: 11px; padding-top: 6px;")
        content = QWidget()
        outer = QVBoxLayout(content)
        outer.setContentsMargins(8, 6, 8, 6)
        outer.addWidget(self.state_label)
        outer.addWidget(self.analyze_button)
        outer.addWidget(self.result_widget)
        outer.addWidget(disclaimer)
        outer.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(content)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)

    # -- states -----------------------------------------------------------------------------------------------

    def _show_state(self, state: str, text: str, *, button: bool, error: bool = False) -> None:
        self.state = state
        self.result = None
        self.state_label.setText(text)
        colour = "#ff8c7a" if error else theme.TEXT
        self.state_label.setStyleSheet(f"color: {colour}; font-size: 14px; padding: 6px 0px;")
        self.state_label.show()
        self.analyze_button.setVisible(button)
        self.result_widget.hide()

    def show_empty(self, text: str = "This series has not been analysed.") -> None:
        """No result: ``text`` and the Analyze button."""
        self._show_state("empty", text, button=True)

    def show_waiting(self) -> None:
        """The analysis waits for the series to load."""
        self._show_state("waiting", "The analysis starts once the series has loaded…", button=False)

    def show_running(self) -> None:
        """The analysis runs (its progress is in the status bar)."""
        self._show_state(
            "running", "Analysing this series… (progress and Cancel in the status bar)", button=False
        )

    def show_cancelled(self) -> None:
        """The analysis was cancelled; Analyze can start it again."""
        self._show_state("cancelled", "The analysis was cancelled.", button=True)

    def show_refused(self, message: str) -> None:
        """The series cannot be analysed at all (``message`` says why); trying again would not help."""
        self._show_state("refused", message, button=False, error=True)

    def show_failed(self, message: str) -> None:
        """The analysis failed with ``message``; Analyze can try again."""
        self._show_state("failed", f"The analysis failed: {message}", button=True, error=True)

    def set_overlay_controls(
        self, enabled: bool, opacity: float, threshold: float, scaling: str | None = None
    ) -> None:
        """Reflect the overlay's state without emitting the change signals back."""
        if scaling is not None:
            self.scaling_combo.blockSignals(True)
            self.scaling_combo.setCurrentIndex(max(0, self.scaling_combo.findData(scaling)))
            self.scaling_combo.blockSignals(False)
        for widget, value in (
            (self.overlay_check, enabled),
            (self.opacity_slider, round(opacity * 100)),
            (self.threshold_slider, round(threshold * 100)),
        ):
            widget.blockSignals(True)
            if isinstance(widget, QCheckBox):
                widget.setChecked(bool(value))
            else:
                widget.setValue(int(value))
            widget.blockSignals(False)
        self.threshold_value.setText(f"{threshold:.2f}")

    # -- the result -------------------------------------------------------------------------------------------

    def _show_finding(self, result: AnalysisResult) -> None:
        """The finding, its probability and the amber box; outside intended use "Not assessed" and the reasons."""
        assessed = result.assessed
        # No reassuring green on a series outside the intended use: the amber box below says why.
        if not assessed:
            colour = theme.TEXT
        else:
            colour = (
                POSITIVE_COLOUR if result.positive else (theme.TEXT if result.warnings else NEGATIVE_COLOUR)
            )
        self.finding_label.setText(result.finding if assessed else "Not assessed")
        self.finding_label.setStyleSheet(f"font-size: 22px; font-weight: bold; color: {colour};")
        if assessed:
            relation = "at or above" if result.positive else "below"
            self.probability_label.setText(
                f"Probability {format_probability(result.probability)} — {relation} the threshold "
                f"{format_probability(result.threshold)}"
            )
            heading = "<b>⚠ Intended-use warning</b> — read this result with extra caution:"
        else:
            self.probability_label.setText(
                "No finding is given for this series: the model was not made for it."
            )
            heading = "<b>⚠ Not assessed: outside the model's intended use</b> — no finding is given because:"
        if result.warnings:
            # Outside intended use the box gives the reasons first, then the advisories under their own heading,
            # so a reader does not take a caution for a reason the finding was withheld.
            reasons = [w for w in result.warnings if w.disqualifying or assessed]
            advisories = [w for w in result.warnings if not w.disqualifying and not assessed]
            text = heading + _bullets(reasons)
            if advisories:
                text += "<b>Also, for caution:</b>" + _bullets(advisories)
            self.warnings_label.setText(text)
            self.warnings_label.show()
        else:
            self.warnings_label.hide()
        self.study_only_label.setVisible(not assessed)
        # A negative finding reassures; the reader should know which bleeds the model most often let through.
        misses = misses_sentence(result.known_misses)
        self.misses_label.setText(
            f"A result below the threshold does not exclude a bleed. {misses} Help ▸ Model Card has every group."
            if misses
            else ""
        )
        self.misses_label.setVisible(bool(misses) and assessed and not result.positive)

    def show_result(self, result: AnalysisResult, current_slice: int = 0) -> None:
        """Display ``result`` (an AnalysisResult of the series on screen)."""
        self.result = result
        self.state = "result"
        self.state_label.hide()
        self.analyze_button.hide()
        n = int(result.identity.n_slices)
        self._n = n
        self._show_finding(result)
        self.notice_label.setText(f"⚠ {result.device_notice}" if result.device_notice else "")
        self.notice_label.setVisible(bool(result.device_notice))
        total = result.timings.get("total")
        took = f" in {total:.1f} s" if total is not None else ""
        model = result.model
        self.info_label.setText(
            f"Ran on {result.device}{took} · model {model.name} {model.version} (SHA-256 {model.sha256[:12]}…)"
        )
        links = ", ".join(
            f"<a href='slice:{k}' style='color: {KEY_COLOUR};'>{k + 1}</a>" for k in result.key_slices
        )
        self.key_label.setText(
            f"Key slices (largest share of the study score first): {links}" if links else ""
        )

        x = np.arange(1, n + 1, dtype=float)
        for plot in self.plots:
            plot.set_slices(n)
            plot.set_key_slices([] if plot is self.heatmap_plot else list(result.key_slices))
        self.probability_curve.setData(x, np.asarray(result.slice_probabilities, dtype=float))
        self.threshold_line.setValue(result.threshold)
        for key, curve in self.gate_curves.items():
            values = result.gates.get(key)
            if values is None:
                curve.setData([], [])
            else:
                curve.setData(x, np.asarray(values, dtype=float))
        self._set_hidden_axis(hidden_axis(*(np.asarray(v) for v in result.hidden_saliency.values())))
        self._draw_hidden()
        self._draw_matrix()
        self.result_widget.show()
        self.set_current_slice(current_slice)

    def _draw_matrix(self) -> None:
        result = self.result
        if result is None:
            return
        key = self.matrix_combo.currentData()
        matrix = result.gate_matrices.get(key)
        if matrix is None:
            self.heatmap_image.clear()
            return
        units, n = matrix.shape
        self.heatmap_image.setImage(
            np.asarray(matrix, dtype=np.float32), levels=(0.0, 1.0), lut=self.heatmap_lut
        )
        self.heatmap_image.setRect(QRectF(0.5, 0.0, n, units))
        self.heatmap_plot.plot_item.setYRange(0, units, padding=0.0)

    def set_current_slice(self, k: int) -> None:
        """Move the cursors to slice ``k`` (0-based) and describe it."""
        self._index = int(k)
        for plot in self.plots:
            plot.set_cursor(self._index)
        result = self.result
        if result is None or not 0 <= k < self._n:
            self.slice_label.setText("")
            return
        parts = [
            f"<b>Slice {k + 1} / {self._n}</b>",
            f"probability {format_probability(float(result.slice_probabilities[k]))}",
            hidden_words(float(result.hidden_saliency["combined"][k])),
        ]
        if k in result.key_slices:
            parts.append("key slice")
        self.slice_label.setText(" · ".join(parts))

    def _on_plot_click(self, k: int) -> None:
        if self.result is not None and 0 <= k < self._n:
            self.slice_clicked.emit(k)

    def _on_threshold(self, value: int) -> None:
        self.threshold_value.setText(f"{value / 100:.2f}")
        self.threshold_changed.emit(value / 100.0)


def _bullets(warnings: Sequence[UseWarning]) -> str:
    """An HTML list of the warnings' messages, escaped."""
    items = "".join(f"<li>{html.escape(w.message)}</li>" for w in warnings)
    return f"<ul style='margin-left: -20px; margin-top: 2px; margin-bottom: 0px;'>{items}</ul>"
