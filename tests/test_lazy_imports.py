"""The window opens without importing torch or scipy.stats (2.4 s of the 3.6 s the main window module took to
import before): they load with the first analysis or evaluation, on a worker."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "scipy.stats")


@pytest.mark.parametrize(
    "module", ["viewer.ui.main_window", "viewer.ui.app", "viewer.cli", "viewer.report", "viewer.model.card"]
)
def test_module_imports_without_heavy_dependencies(module: str) -> None:
    code = f"import sys, {module}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert out.stdout.strip() == "", f"importing {module} loaded {out.stdout.strip()}"
