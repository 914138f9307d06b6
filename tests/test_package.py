"""`make package`: the PyInstaller bundle carries what Qt's xcb plugin needs and passes its own self-test.

Slow (a full PyInstaller build, several minutes): run by `make test-slow`. The check is the loader's own: `ldd`
on the bundled platform plugin, with nothing from the build machine's environment, must resolve every xcb-util
and xkbcommon library inside the bundle, so the window opens on a desktop that lacks them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not sys.platform.startswith("linux") or shutil.which("ldd") is None:
        pytest.skip("the bundle's library check uses Linux's ldd")
    pytest.importorskip("PyInstaller", reason="pip install pyinstaller (make package installs it)")
    work = tmp_path_factory.mktemp("package")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--clean",
            "--distpath",
            str(work / "dist"),
            "--workpath",
            str(work / "build"),
            str(REPO / "packaging" / "gru-viewer.spec"),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=3000,
    )
    return work / "dist" / "gru-viewer"


def test_the_bundled_xcb_plugin_finds_its_libraries_inside_the_bundle(bundle: Path) -> None:
    plugins = list(bundle.rglob("platforms/libqxcb.so"))
    assert len(plugins) == 1
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    ldd = subprocess.run(["ldd", str(plugins[0])], env=env, capture_output=True, text=True, check=True).stdout
    assert "not found" not in ldd
    resolved = dict(re.findall(r"^\s*((?:libxcb-|libxkbcommon)\S*) => (\S+)", ldd, re.MULTILINE))
    for soname in ("libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxkbcommon-x11.so.0"):
        assert soname in resolved
        assert Path(resolved[soname]).resolve().is_relative_to(bundle.resolve()), (soname, resolved[soname])


def test_the_bundle_passes_its_own_self_test(bundle: Path) -> None:
    out = subprocess.run(
        [str(bundle / "gru-viewer"), "--self-test"], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_bundle_preflight_finds_its_own_xcb_plugin_complete(bundle: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "WAYLAND_DISPLAY")}
    env.update(
        DISPLAY=":0", QT_QPA_PLATFORM="xcb"
    )  # the preflight only looks at files; no X server is needed
    out = subprocess.run(
        [str(bundle / "gru-viewer"), "preflight"], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert "'xcb' platform plugin can start" in out.stdout
