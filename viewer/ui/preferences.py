"""Tools → Preferences: the six W/L presets (keys 1–6), the cine rate, the volume cache size, the analysis device,
whether a result moves the view to its first key slice, and how the pixel-saliency overlay is scaled (General);
the PACS nodes and the DICOM receiver (PACS, see :mod:`viewer.ui.pacs_preferences`)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from viewer.analysis.display import SCALING_NAMES, SCALINGS
from viewer.ui.cache import default_cache_bytes
from viewer.ui.pacs_preferences import PacsNodesEditor, ReceiverBox
from viewer.ui.settings import DEFAULT_PRESETS, ViewerSettings, WindowPreset


class PreferencesDialog(QDialog):
    """Window/level presets, cine speed, volume cache size and analysis device, saved on OK."""

    def __init__(self, settings: ViewerSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self._settings = settings
        presets_box = QGroupBox("Window/level presets (keys 1–6, in modality units: HU for CT)")
        grid = QGridLayout(presets_box)
        for c, title in enumerate(("Key", "Name", "Level (center)", "Width")):
            grid.addWidget(QLabel(title), 0, c)
        self.rows: list[tuple[QLineEdit, QDoubleSpinBox, QDoubleSpinBox]] = []
        for r in range(len(DEFAULT_PRESETS)):
            name = QLineEdit()
            center = QDoubleSpinBox()
            center.setRange(-5000.0, 50000.0)
            center.setDecimals(0)
            width = QDoubleSpinBox()
            width.setRange(1.0, 100000.0)
            width.setDecimals(0)
            grid.addWidget(QLabel(str(r + 1)), r + 1, 0)
            grid.addWidget(name, r + 1, 1)
            grid.addWidget(center, r + 1, 2)
            grid.addWidget(width, r + 1, 3)
            self.rows.append((name, center, width))
        restore = QPushButton("Restore defaults")
        restore.clicked.connect(lambda: self._fill(list(DEFAULT_PRESETS)))
        grid.addWidget(restore, len(DEFAULT_PRESETS) + 1, 0, 1, 4)

        other = QGroupBox("Display and memory")
        form = QFormLayout(other)
        self.fps = QDoubleSpinBox()
        self.fps.setRange(1.0, 60.0)
        self.fps.setDecimals(0)
        self.fps.setSuffix(" frames/s")
        self.fps.setValue(settings.cine_fps)
        form.addRow("Cine rate", self.fps)
        self.cache = QSpinBox()
        self.cache.setRange(64, 1024 * 1024)
        self.cache.setSingleStep(256)
        self.cache.setSuffix(" MiB")
        self.cache.setValue(settings.cache_mb or default_cache_bytes() // 2**20)
        self.cache.setToolTip("Series read recently stay in memory up to this size; the oldest go first.")
        form.addRow("Series cache", self.cache)
        self.mpr_linked = QCheckBox("Reformat panes share window/level and zoom")
        self.mpr_linked.setChecked(settings.mpr_linked)
        self.mpr_linked.setToolTip("Off: each pane of the 1×3 and 2×2 layouts keeps its own window and zoom.")
        form.addRow("Reformats", self.mpr_linked)

        analysis = QGroupBox("Analysis")
        analysis_form = QFormLayout(analysis)
        self.device = QComboBox()
        self.device.addItem("Automatic (GPU when available)", "auto")
        self.device.addItem("CPU only", "cpu")
        self.device.setCurrentIndex(max(0, self.device.findData(settings.analysis_device)))
        self.device.setToolTip(
            "Where the model runs. Automatic uses a GPU when one is usable and falls back to the CPU if it fails."
        )
        analysis_form.addRow("Device", self.device)
        self.jump = QCheckBox("Go to the first key slice when the result arrives")
        self.jump.setChecked(settings.jump_to_key_slice)
        self.jump.setToolTip("Not when you have scrolled since clicking Analyze.")
        analysis_form.addRow("", self.jump)
        self.scaling = QComboBox()
        for key in SCALINGS:
            self.scaling.addItem(SCALING_NAMES[key].capitalize(), key)
        self.scaling.setCurrentIndex(max(0, self.scaling.findData(settings.saliency_scaling)))
        self.scaling.setToolTip(
            "Scaled to the series: each slice's map at the strength of its bleed probability (a normal slice "
            "stays dark). Scaled per slice: every slice shows its own strongest pixels at full strength."
        )
        analysis_form.addRow("Pixel saliency", self.scaling)

        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        general = QWidget()
        general_layout = QVBoxLayout(general)
        general_layout.addWidget(presets_box)
        general_layout.addWidget(other)
        general_layout.addWidget(analysis)

        pacs = QWidget()
        pacs_layout = QVBoxLayout(pacs)
        nodes_box = QGroupBox("PACS nodes (changes are saved at once)")
        self.nodes = PacsNodesEditor(parent=nodes_box)
        QVBoxLayout(nodes_box).addWidget(self.nodes)
        self.receiver = ReceiverBox(settings)
        pacs_layout.addWidget(nodes_box)
        pacs_layout.addWidget(self.receiver)
        pacs_layout.addStretch(1)

        self.tabs = QTabWidget()
        self.tabs.addTab(general, "General")
        self.tabs.addTab(pacs, "PACS")
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(buttons)
        self._fill(settings.presets())

    def _fill(self, presets: list[WindowPreset]) -> None:
        for (name, center, width), p in zip(self.rows, presets, strict=False):
            name.setText(p.name)
            center.setValue(p.center)
            width.setValue(p.width)

    def presets(self) -> list[WindowPreset]:
        """The presets as edited (an empty name becomes "Preset N")."""
        return [
            WindowPreset(name.text().strip() or f"Preset {i + 1}", center.value(), width.value())
            for i, (name, center, width) in enumerate(self.rows)
        ]

    def accept(self) -> None:
        """Save the choices to the settings and close (not while the receiver's settings are invalid)."""
        if not self.receiver.check():
            self.tabs.setCurrentIndex(1)
            return
        self.receiver.save(self._settings)
        self._settings.set_presets(self.presets())
        self._settings.cine_fps = self.fps.value()
        self._settings.cache_mb = self.cache.value()
        self._settings.analysis_device = str(self.device.currentData())
        self._settings.jump_to_key_slice = self.jump.isChecked()
        self._settings.saliency_scaling = str(self.scaling.currentData())
        self._settings.mpr_linked = self.mpr_linked.isChecked()
        self._settings.sync()
        super().accept()

    def done(self, result: int) -> None:
        """Close, stopping a node test still running."""
        self.nodes.shutdown()
        super().done(result)
