"""Dark reading-room theme: low-luminance greys, no pure white around the image, one muted accent."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

ACCENT = "#3d7fb8"
TEXT = "#c8c8c8"
DIM_TEXT = "#8a8a8a"
PANEL = "#202225"
BASE = "#17181a"
IMAGE_BACKGROUND = "#000000"
OVERLAY_TEXT = "#d9d9d9"
WARNING_TEXT = "#e0b050"

_STYLE = f"""
QMainWindow::separator {{ background: #2b2d31; width: 3px; height: 3px; }}
QDockWidget {{ color: {TEXT}; }}
QDockWidget::title {{ background: #26282c; padding: 4px 6px; }}
QTreeView, QTableView, QListView {{ background: {BASE}; alternate-background-color: #1c1d20; border: none; }}
QTreeView::item {{ padding: 2px 0px; }}
QTreeView::item:selected, QTableView::item:selected {{ background: #2f4f6b; color: #ffffff; }}
QHeaderView::section {{ background: #25272b; color: {DIM_TEXT}; border: none; padding: 3px 6px; }}
QLineEdit {{
    background: {BASE}; border: 1px solid #3a3d42; border-radius: 3px; padding: 2px 4px; color: {TEXT};
}}
QLineEdit:focus {{ border-color: {ACCENT}; }}
QStatusBar {{ background: #1b1c1f; color: {TEXT}; }}
QStatusBar QLabel {{ color: {TEXT}; padding: 0px 6px; }}
QProgressBar {{ background: {BASE}; border: 1px solid #3a3d42; border-radius: 3px; text-align: center;
    color: {TEXT}; max-height: 14px; }}
QProgressBar::chunk {{ background: {ACCENT}; }}
QSlider::groove:horizontal {{ height: 4px; background: #3a3d42; border-radius: 2px; }}
QSlider::handle:horizontal {{ background: #9aa4ae; width: 10px; margin: -5px 0; border-radius: 5px; }}
QSlider::sub-page:horizontal {{ background: #4f6f8c; border-radius: 2px; }}
QToolButton, QPushButton {{ color: {TEXT}; }}
QMenu::separator {{ height: 1px; background: #3a3d42; margin: 4px 8px; }}
"""


def dark_palette() -> QPalette:
    """The app's dark palette."""
    p = QPalette()
    roles = {
        QPalette.ColorRole.Window: PANEL,
        QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: BASE,
        QPalette.ColorRole.AlternateBase: "#1c1d20",
        QPalette.ColorRole.ToolTipBase: "#2b2d31",
        QPalette.ColorRole.ToolTipText: TEXT,
        QPalette.ColorRole.PlaceholderText: DIM_TEXT,
        QPalette.ColorRole.Text: TEXT,
        QPalette.ColorRole.Button: "#2a2c30",
        QPalette.ColorRole.ButtonText: TEXT,
        QPalette.ColorRole.BrightText: "#ff6060",
        QPalette.ColorRole.Link: ACCENT,
        QPalette.ColorRole.Highlight: "#2f4f6b",
        QPalette.ColorRole.HighlightedText: "#ffffff",
    }
    for role, colour in roles.items():
        p.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#5c5f66"))
    return p


def apply_dark_theme(app: QApplication) -> None:
    """Fusion style with a dark palette and a small stylesheet; idempotent."""
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    app.setStyleSheet(_STYLE)
