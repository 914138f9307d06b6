"""The desktop preflight: which platform plugin Qt will use, what it lacks, and what the user is told."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from viewer.ui import preflight
from viewer.ui.preflight import (
    NO_DISPLAY,
    check,
    install_command,
    missing_libraries,
    packages_for,
    requested_platforms,
)

REPO = Path(__file__).resolve().parents[2]

LDD_MISSING = """\
\tlinux-vdso.so.1 (0x00007ffd3b5f2000)
\tlibQt6XcbQpa.so.6 => /opt/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007f0e4a000000)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e49c00000)
"""


def _ldd(output: str):
    calls: list[Path] = []

    def fake(path: Path, env) -> str:
        calls.append(path)
        return output

    return fake, calls


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ["xcb"]),
        ({"QT_QPA_PLATFORM": "offscreen"}, ["offscreen"]),
        ({"QT_QPA_PLATFORM": "wayland;xcb"}, ["wayland", "xcb"]),
        ({"QT_QPA_PLATFORM": "xcb:nomitshm"}, ["xcb"]),
        ({"XDG_SESSION_TYPE": "wayland", "XDG_CURRENT_DESKTOP": "KDE"}, ["wayland", "xcb"]),
        ({"XDG_SESSION_TYPE": "wayland", "XDG_CURRENT_DESKTOP": "ubuntu:GNOME"}, ["xcb"]),
        ({"XDG_SESSION_TYPE": "x11"}, ["xcb"]),
    ],
)
def test_the_platform_qt_will_try_respects_qt_qpa_platform(env: dict[str, str], expected: list[str]) -> None:
    assert requested_platforms(env) == expected


def test_ldd_output_gives_each_missing_library_once_in_order() -> None:
    assert missing_libraries(LDD_MISSING) == (
        "libxcb-cursor.so.0",
        "libxcb-icccm.so.4",
        "libxcb-keysyms.so.1",
    )
    assert missing_libraries("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n") == ()


def test_missing_xcb_libraries_are_named_with_the_command_that_installs_them() -> None:
    fake, calls = _ldd(LDD_MISSING)
    found = check({"DISPLAY": ":0"}, platform="linux", ldd=fake, family="debian")
    assert not found.ok
    assert found.platform == "xcb" and calls and calls[0].name == "libqxcb.so"
    assert found.missing == ("libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1")
    assert "libxcb-cursor.so.0, libxcb-icccm.so.4, libxcb-keysyms.so.1" in found.problem
    assert "sudo apt-get install -y libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1" in found.problem
    assert "dnf" not in found.problem


def test_fedora_gets_dnf_and_an_unknown_system_gets_both_commands() -> None:
    fake, _ = _ldd(LDD_MISSING)
    fedora = check({"DISPLAY": ":0"}, platform="linux", ldd=fake, family="fedora")
    assert "sudo dnf install -y xcb-util-cursor xcb-util-wm xcb-util-keysyms" in fedora.problem
    unknown = check({"DISPLAY": ":0"}, platform="linux", ldd=fake, family="")
    assert "apt-get install" in unknown.problem and "dnf install" in unknown.problem


def test_a_library_no_table_knows_is_still_named_with_how_to_find_its_package() -> None:
    fake, _ = _ldd("\tlibfoo-bar.so.3 => not found\n")
    found = check({"DISPLAY": ":0"}, platform="linux", ldd=fake, family="debian")
    assert "libfoo-bar.so.3" in found.problem and "apt-file search" in found.problem


def test_all_libraries_present_is_ok() -> None:
    fake, _ = _ldd("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n")
    assert check({"DISPLAY": ":0"}, platform="linux", ldd=fake).ok


def test_no_display_has_its_own_message_pointing_to_the_command_line() -> None:
    fake, calls = _ldd(LDD_MISSING)
    found = check({}, platform="linux", ldd=fake)
    assert found.problem == NO_DISPLAY
    assert "--self-test" in found.problem and "gru-viewer analyze" in found.problem
    assert not calls  # no display: the libraries are not the first thing to fix


def test_a_wayland_session_without_x_uses_the_wayland_plugin() -> None:
    fake, calls = _ldd("")
    found = check({"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}, platform="linux", ldd=fake)
    assert found.ok and found.platform == "wayland"
    assert [c.name for c in calls] == ["libqwayland.so"]


def test_offscreen_set_by_the_user_needs_no_display() -> None:
    fake, _ = _ldd("")
    found = check({"QT_QPA_PLATFORM": "offscreen"}, platform="linux", ldd=fake)
    assert found.ok and found.platform == "offscreen"


def test_an_unknown_platform_plugin_is_named() -> None:
    fake, _ = _ldd("")
    found = check({"QT_QPA_PLATFORM": "nosuchplatform"}, platform="linux", ldd=fake)
    assert "nosuchplatform" in found.problem


def test_other_systems_are_not_checked() -> None:
    fake, calls = _ldd(LDD_MISSING)
    assert check({}, platform="darwin", ldd=fake).ok and not calls


def test_packages_and_install_command() -> None:
    missing = ["libxcb-icccm.so.4", "libxcb-randr.so.0", "libxcb-shape.so.0"]
    assert packages_for(missing, "fedora") == (["xcb-util-wm", "libxcb"], [])
    assert install_command(missing, "debian", sudo=False).endswith(
        "apt-get install -y -qq libxcb-icccm4 libxcb-randr0 libxcb-shape0"
    )
    assert (
        install_command(missing, "debian")
        == "sudo apt-get install -y libxcb-icccm4 libxcb-randr0 libxcb-shape0"
    )
    assert install_command(missing, "") == ""


def test_os_release_gives_the_family(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text("ID=ubuntu\nID_LIKE=debian\n")
    assert preflight.distro_family(release) == "debian"
    release.write_text('ID="rocky"\nID_LIKE="rhel centos fedora"\n')
    assert preflight.distro_family(release) == "fedora"
    release.write_text("ID=arch\n")
    assert preflight.distro_family(release) == ""
    assert preflight.distro_family(tmp_path / "absent") == ""


def _fake_plugin_needing(folder: Path, soname: str) -> Path:
    """A platform plugin file whose ELF header needs ``soname``, which then is removed: a real missing library."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or shutil.which("ldd") is None:
        pytest.skip("needs a C compiler and ldd to build a plugin with a missing library")
    build = folder / "build"
    build.mkdir()
    (build / "dep.c").write_text("int gru_viewer_dep(void) { return 1; }\n")
    (build / "plugin.c").write_text(
        "int gru_viewer_dep(void);\nint plugin(void) { return gru_viewer_dep(); }\n"
    )
    stem = soname.split(".so")[0].removeprefix("lib")
    subprocess.run(
        [
            cc,
            "-shared",
            "-fPIC",
            "-o",
            str(build / f"lib{stem}.so"),
            f"-Wl,-soname,{soname}",
            str(build / "dep.c"),
        ],
        check=True,
    )
    plugins = folder / "platforms"
    plugins.mkdir()
    plugin = plugins / "libqxcb.so"
    subprocess.run(
        [
            cc,
            "-shared",
            "-fPIC",
            "-o",
            str(plugin),
            str(build / "plugin.c"),
            "-Wl,--no-as-needed",
            f"-L{build}",
            f"-l{stem}",
        ],
        check=True,
    )
    shutil.rmtree(build)
    return plugins


def test_gui_with_a_missing_library_prints_the_message_and_exits_1_without_an_abort(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the preflight checks Linux platform plugins")
    plugins = _fake_plugin_needing(tmp_path, "libgru-viewer-absent.so.1")
    env = dict(os.environ)
    for name in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE"):
        env.pop(name, None)
    env.update(DISPLAY=":987", QT_QPA_PLATFORM_PLUGIN_PATH=str(plugins))
    out = subprocess.run(
        [sys.executable, "-m", "viewer", "gui"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1, out.stderr
    assert "cannot open its window" in out.stderr
    assert "libgru-viewer-absent.so.1" in out.stderr
    assert "qt.qpa" not in out.stderr and "Aborted" not in out.stderr


def test_gui_without_a_display_says_so_and_exits_1(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the preflight checks Linux platform plugins")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    out = subprocess.run(
        [sys.executable, "-m", "viewer", str(tmp_path)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.strip() == f"{NO_DISPLAY}".strip()
