"""One frozen-aware way to find bundled resources (model weights, icons, styles).

Every resource path goes through :func:`resource_path` (vorta's ``get_asset`` habit), so the same code works from
a source checkout, an editable install and a PyInstaller bundle (where files sit under ``sys._MEIPASS``).
"""

from __future__ import annotations

import sys
from pathlib import Path


def resources_root() -> Path:
    """The folder holding ``models/``, ``icons/`` and ``styles/``."""
    frozen_base = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and frozen_base:
        return Path(frozen_base) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def resource_path(*parts: str) -> Path:
    """Path of a bundled resource, e.g. ``resource_path("models", "slice_gru.safetensors")``."""
    return resources_root().joinpath(*parts)
