"""A real window, as a desktop user gets it: the app under Xvfb on Qt's xcb platform, not offscreen.

Only this sees what the offscreen platform hides (the xcb plugin's system libraries, a window that never maps, a
dock that never shows). The app is started as a user starts it (``gru-viewer gui DEMO`` in a subprocess),
driven with xdotool, looked at with a screenshot of the X screen, and closed with Ctrl+Q. Needs Xvfb, xdotool and
ImageMagick's ``import`` (`.ci/run` installs them with Qt's xcb libraries); skipped, saying why, elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from viewer.ui.preflight import check

pytestmark = [pytest.mark.xcb, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parent.parent
SCREEN = (1600, 1000)


def _require_tools() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("Xvfb and the xcb platform are Linux's")
    lacking = [t for t in ("Xvfb", "xdotool", "import") if shutil.which(t) is None]
    if lacking:
        pytest.skip(f"{', '.join(lacking)} not installed (apt-get install -y xvfb xdotool imagemagick)")


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    """A private Xvfb screen; its number is chosen by Xvfb itself (-displayfd), so parallel runs never clash."""
    _require_tools()
    read, write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    if not number:
        server.kill()
        pytest.skip("Xvfb did not start")
    try:
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def demo_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("xcb") / "demo"
    subprocess.run(
        [sys.executable, "-m", "viewer", "demo-data", str(out)],
        cwd=REPO,
        check=True,
        timeout=300,
        capture_output=True,
    )
    return out


def _env(display: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "XDG_SESSION_TYPE")}
    env.update(
        DISPLAY=display,
        QT_QPA_PLATFORM="xcb",
        GRU_VIEWER_SETTINGS_DIR=str(tmp_path / "settings"),
        GRU_VIEWER_CACHE_DIR=str(tmp_path / "cache"),
        GRU_VIEWER_DATA_DIR=str(tmp_path / "data"),
    )
    return env


def _xdotool(env: dict[str, str], *args: str) -> str:
    # A UTF-8 locale: the title holds an em dash, which xdotool cannot read back in the C locale.
    out = subprocess.run(
        ["xdotool", *args], env={**env, "LC_ALL": "C.UTF-8"}, capture_output=True, text=True, timeout=30
    )
    return out.stdout.strip()


def _screenshot(env: dict[str, str], path: Path) -> np.ndarray:
    subprocess.run(["import", "-window", "root", str(path)], env=env, check=True, timeout=30)
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def _coloured_pixels(shot: np.ndarray, x0: int, x1: int, y0: int, y1: int) -> int:
    """Strongly coloured pixels in a box: plots, heatmap and overlays are colour, the CT image is grey."""
    box = shot[y0:y1, x0:x1]
    return int(((box.max(axis=2) - box.min(axis=2)) > 80).sum())


def _start_app(
    display: str, demo_study: Path, tmp_path: Path
) -> tuple[dict[str, str], subprocess.Popen, Path]:
    """``gru-viewer gui DEMO`` as a user starts it, on this screen; skips where Qt's xcb plugin cannot load."""
    env = _env(display, tmp_path)
    found = check(env)
    if not found.ok:
        pytest.skip(f"Qt's xcb plugin cannot load here: {found.problem.splitlines()[0]}")
    log = tmp_path / "app-stderr.txt"  # a file, not a pipe: a pipe nobody reads can block the app
    with log.open("w") as stderr:
        app = subprocess.Popen(
            [sys.executable, "-m", "viewer", "gui", str(demo_study)],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    return env, app, log


def _wait_for_window(env: dict[str, str], app: subprocess.Popen, deadline: float) -> str:
    """The app's visible window, once it maps (generous: a busy machine may take minutes to start Qt)."""
    window = ""
    while not window and time.monotonic() < deadline and app.poll() is None:
        window = next(iter(_xdotool(env, "search", "--onlyvisible", "--pid", str(app.pid)).split()), "")
        time.sleep(0.5)
    assert window, "no window appeared"
    return window


def _wait_for_titled_window(env: dict[str, str], app: subprocess.Popen, title: str, deadline: float) -> str:
    """The app's visible window that bears ``title``.

    Every visible window of the process is asked on each poll: Qt maps unnamed helper windows too, and the first
    one ``search`` lists need not be the main window (asking only that one once timed out with an empty name).
    """
    seen: set[str] = set()
    while time.monotonic() < deadline and app.poll() is None:
        for window in _xdotool(env, "search", "--onlyvisible", "--pid", str(app.pid)).split():
            name = _xdotool(env, "getwindowname", window)
            if name == title:
                return window
            seen.add(name)
        time.sleep(0.5)
    raise AssertionError(f"no window titled {title!r}; the app's visible windows were named {sorted(seen)!r}")


def test_the_app_opens_a_real_window_analyses_and_closes_cleanly(
    display: str, demo_study: Path, tmp_path: Path
) -> None:
    env, app, log = _start_app(display, demo_study, tmp_path)
    try:
        deadline = time.monotonic() + 300
        expected = f"{demo_study.name} — GRU Viewer"  # the folder, then Qt's application display name
        window = _wait_for_titled_window(env, app, expected, deadline)
        time.sleep(3)  # the series loads and its first slice is drawn
        before = _screenshot(env, tmp_path / "1-open.png")
        assert before.std() > 10, "the screen is blank"
        width, height = before.shape[1], before.shape[0]
        right = (width // 2, width, 60, height - 60)
        assert _coloured_pixels(before, *right) < 5000, "the results dock shows before Analyze"

        _xdotool(env, "windowfocus", "--sync", window)
        _xdotool(env, "key", "ctrl+r")
        coloured, shot = 0, before
        deadline = time.monotonic() + 300
        while coloured < 20000 and time.monotonic() < deadline:
            time.sleep(2)
            shot = _screenshot(env, tmp_path / "2-analysed.png")
            coloured = _coloured_pixels(shot, *right)
        assert coloured >= 20000, f"no results dock after Analyze (screenshot {tmp_path / '2-analysed.png'})"

        _xdotool(env, "windowfocus", "--sync", window)
        _xdotool(env, "key", "ctrl+q")
        app.wait(timeout=120)
    except BaseException:
        if app.poll() is None:
            _screenshot(env, tmp_path / "failed.png")
            app.kill()
            app.wait()
        print(f"app stderr: {log.read_text()}; screen: {tmp_path / 'failed.png'}")
        raise
    err = log.read_text()
    assert app.returncode == 0, err
    warnings = [line for line in err.splitlines() if line.strip()]
    assert not warnings, "stderr:\n" + err


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_termination_signal_closes_the_window_as_its_close_button_does(
    display: str, demo_study: Path, tmp_path: Path, sig: str
) -> None:
    """Logout (SIGTERM) or Ctrl+C in the terminal (SIGINT) closes the window through its usual shutdown: exit
    status 0 and a silent stderr, where the default handling killed the process (status -15) and left the
    decoding processes' semaphores to the resource tracker's warning."""
    import signal

    env, app, log = _start_app(display, demo_study, tmp_path)
    try:
        _wait_for_window(env, app, time.monotonic() + 300)
        time.sleep(3)  # the decoding processes are up 1.5 s after the start
        app.send_signal(getattr(signal, sig))
        app.wait(timeout=60)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    err = log.read_text()
    assert app.returncode == 0, err
    assert not [line for line in err.splitlines() if line.strip()], "stderr:\n" + err
