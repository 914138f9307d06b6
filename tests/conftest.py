"""Shared test set-up: headless Qt, and a private cache dir so tests never touch the user's index."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["GRU_VIEWER_CACHE_DIR"] = str(tmp_path_factory.mktemp("gru-viewer-cache"))
