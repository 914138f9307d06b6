"""The GUI as a whole: ``main()`` started in a subprocess, and a screenshot of the window for review."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QImage

from viewer.ui.app import EXIT_AFTER_ENV, create_application
from viewer.ui.main_window import MainWindow
from viewer.ui.settings import ViewerSettings

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise"),
]

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        GRU_VIEWER_SETTINGS_DIR=str(tmp_path / "settings"),
        GRU_VIEWER_CACHE_DIR=str(tmp_path / "cache"),
    )
    return env


def test_help_answers_without_a_display(tmp_path: Path) -> None:
    env = _env(tmp_path)
    env.pop("QT_QPA_PLATFORM")
    out = subprocess.run(
        [sys.executable, "-m", "viewer", "--help"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "gru-viewer" in out.stdout


def test_main_opens_the_window_on_a_folder_and_closes_itself(tmp_path: Path, ui_study_dir: Path) -> None:
    env = _env(tmp_path)
    env[EXIT_AFTER_ENV] = "1500"
    code = "import sys; from viewer.cli import main; sys.exit(main([sys.argv[1]]))"
    out = subprocess.run(
        [sys.executable, "-c", code, str(ui_study_dir / "axial")],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "QThread: Destroyed" not in out.stderr
    recent = ViewerSettings(tmp_path / "settings" / "gru-viewer.ini").recent()
    assert recent == [str(ui_study_dir / "axial")]  # the folder was indexed before the window closed


def _grey(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_Grayscale8)
    buffer = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes())
    return buffer.reshape(image.height(), image.bytesPerLine())[:, : image.width()].copy()


def test_screenshot_of_the_window_is_not_blank(qtbot, tmp_path: Path, ui_study_dir: Path) -> None:
    create_application()
    window = MainWindow(ViewerSettings(tmp_path / "settings.ini"))
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    qtbot.waitExposed(window)
    with qtbot.waitSignal(window.volume_loaded, timeout=30_000):
        window.open_paths([str(ui_study_dir / "phantom")])
    uid = window.browser.stack_uids()[0]
    qtbot.waitUntil(lambda: window.browser.has_thumbnail(uid), timeout=30_000)
    window.view.set_slice(window.view.n_slices // 2)
    window.view.apply_preset(window.settings.presets()[0])
    qtbot.mouseMove(window.view.canvas.viewport(), window.view.pixel_to_viewport(64, 64).toPoint())
    out_dir = Path(os.environ.get("GRU_VIEWER_SCREENSHOT_DIR") or tmp_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "viewer-window.png"
    shot = window.grab().toImage()
    assert shot.save(str(path))
    assert path.stat().st_size > 10_000

    grey = _grey(shot)
    view = window.view.canvas
    top_left = view.mapTo(window, view.rect().topLeft())
    region = grey[top_left.y() : top_left.y() + view.height(), top_left.x() : top_left.x() + view.width()]
    assert region.std() > 20  # an image with structure, not a flat fill
    assert 0.05 < (region > 40).mean() < 0.95  # head on a black background
    assert grey.std() > 20
    assert window.value_label.text().endswith("HU")
