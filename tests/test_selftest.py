"""``gru-viewer --self-test`` in a subprocess, offscreen: passing with the shipped model, naming the check without.

The second test runs the command as a frozen bundle would (``sys.frozen`` and ``sys._MEIPASS`` set, resources
found through :func:`viewer.resources.resource_path`) on a resources folder that holds no model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from viewer.model.card import default_model_paths
from viewer.resources import resource_path

REPO = Path(__file__).resolve().parent.parent
CHECKS = ("resources", "model", "codecs", "demo study", "viewer window", "analysis", "report")


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("QT_QPA_PLATFORM", None)  # the command must choose offscreen by itself
    env["GRU_VIEWER_CACHE_DIR"] = str(tmp_path / "cache")
    return env


def _lines(out: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Check name → its status word, from the one line each check prints."""
    found = {}
    for line in out.stdout.splitlines():
        for name in CHECKS:
            if line[6:].startswith(name + " "):
                found[name] = line[:4].strip()
    return found


@pytest.mark.skipif(
    not default_model_paths().weights.is_file(), reason="the default model weights are not installed yet"
)
def test_self_test_passes_with_the_shipped_model(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "viewer", "--self-test"],
        env=_env(tmp_path),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert _lines(out) == dict.fromkeys(CHECKS, "ok"), out.stdout
    assert "SHA-256" in out.stdout and "verified" in out.stdout
    assert "Bleed suspected" in out.stdout
    assert out.stdout.strip().splitlines()[-1].startswith("self-test passed: 7 checks")
    assert "Traceback" not in out.stderr and "QThread: Destroyed" not in out.stderr


def test_self_test_without_a_model_fails_naming_the_check(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(resource_path("icons"), bundle / "resources" / "icons")
    code = (
        "import sys; sys.frozen = True; sys._MEIPASS = sys.argv[1]; "
        "from viewer.cli import main; sys.exit(main(['--self-test']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(bundle)],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    status = _lines(out)
    assert status["resources"] == "ok" and status["model"] == "FAIL"
    assert status["viewer window"] == "ok" and status["codecs"] == "ok"
    assert status["analysis"] == "skip" and status["report"] == "skip"
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("self-test FAILED: model: No model installed")
    assert str(bundle / "resources" / "models") in last
    assert "Traceback" not in out.stderr
