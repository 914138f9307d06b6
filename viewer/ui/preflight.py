"""Will Qt's platform plugin load here? Asked before any QApplication exists, so a user never meets a Qt abort.

Since Qt 6.5 the xcb platform plugin needs system libraries that fresh Debian/Ubuntu desktops lack
(libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1, ...). When one is missing, Qt prints a message a user cannot
act on and aborts the process. This module finds the plugin Qt will use (``QT_QPA_PLATFORM`` and
``QT_QPA_PLATFORM_PLUGIN_PATH`` respected), asks the dynamic loader (``ldd``) which of the libraries it needs cannot
be found, and turns that into one message naming them and the command that installs them. It imports no Qt
module (only locates the PySide6 package on disk), so it runs in well under a second and cannot itself abort.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Shared library (soname) → (Debian/Ubuntu package, Fedora/RHEL package), for what Qt's xcb and wayland platform
# plugins need beyond the C runtime.
PACKAGES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxcb-xinerama.so.0": ("libxcb-xinerama0", "libxcb"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxcb-glx.so.0": ("libxcb-glx0", "libxcb"),
    "libxcb-xinput.so.0": ("libxcb-xinput0", "libxcb"),
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libSM.so.6": ("libsm6", "libSM"),
    "libICE.so.6": ("libice6", "libICE"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libwayland-client.so.0": ("libwayland-client0", "libwayland-client"),
    "libwayland-cursor.so.0": ("libwayland-cursor0", "libwayland-cursor"),
    "libwayland-egl.so.1": ("libwayland-egl1", "libwayland-egl"),
}

_NOT_FOUND = re.compile(r"^\s*(\S+)\s*=>\s*not found", re.MULTILINE)

LddFn = Callable[[Path, Mapping[str, str]], str]


@dataclass(frozen=True)
class Preflight:
    """What the check found: ``ok`` or a message for the user, and the libraries that are missing."""

    platform: str
    problem: str = ""
    missing: tuple[str, ...] = ()
    plugin: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.problem


def requested_platforms(env: Mapping[str, str]) -> list[str]:
    """The platform plugins Qt will try, in order: ``QT_QPA_PLATFORM`` (``a;b``, options after ``:`` dropped),
    else what Qt picks itself on Linux (wayland in a non-GNOME Wayland session, otherwise xcb)."""
    raw = env.get("QT_QPA_PLATFORM", "").strip()
    if raw:
        return [p.split(":", 1)[0].strip() for p in raw.split(";") if p.strip()]
    session = env.get("XDG_SESSION_TYPE", "").lower()
    desktop = (env.get("XDG_CURRENT_DESKTOP", "") + env.get("XDG_SESSION_DESKTOP", "")).lower()
    if session == "wayland" and "gnome" not in desktop:
        return ["wayland", "xcb"]
    return ["xcb"]


def plugin_dirs(env: Mapping[str, str]) -> list[Path]:
    """Where Qt looks for platform plugins: ``QT_QPA_PLATFORM_PLUGIN_PATH``, ``QT_PLUGIN_PATH``, PySide6's own."""
    dirs = [Path(p) for p in env.get("QT_QPA_PLATFORM_PLUGIN_PATH", "").split(os.pathsep) if p]
    dirs += [Path(p) / "platforms" for p in env.get("QT_PLUGIN_PATH", "").split(os.pathsep) if p]
    spec = importlib.util.find_spec("PySide6")
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(p) / "Qt" / "plugins" / "platforms" for p in spec.submodule_search_locations]
    return dirs


def find_plugin(name: str, env: Mapping[str, str]) -> Path | None:
    """The file of platform plugin ``name`` (``libq<name>.so``) that Qt would load, or None."""
    for folder in plugin_dirs(env):
        candidate = folder / f"libq{name}.so"
        if candidate.is_file():
            return candidate
    return None


def run_ldd(path: Path, env: Mapping[str, str]) -> str:
    """``ldd`` of ``path`` under ``env`` (the dynamic loader's own answer, without loading it into this process)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return ""
    out = subprocess.run(
        [ldd, str(path)], env=dict(env), capture_output=True, text=True, timeout=20, check=False
    )
    return out.stdout + out.stderr


def missing_libraries(ldd_output: str) -> tuple[str, ...]:
    """The sonames that ``ldd`` reports as ``not found``, each once, in order."""
    return tuple(dict.fromkeys(_NOT_FOUND.findall(ldd_output)))


def distro_family(os_release: Path = Path("/etc/os-release")) -> str:
    """``debian``, ``fedora`` or ``""`` (unknown), from /etc/os-release's ID and ID_LIKE."""
    try:
        text = os_release.read_text(encoding="utf-8", errors="replace").lower()
    except OSError:
        return ""
    ids = " ".join(re.findall(r"^(?:id|id_like)=\"?([^\"\n]*)\"?", text, re.MULTILINE))
    if any(w in ids.split() for w in ("debian", "ubuntu")):
        return "debian"
    if any(w in ids.split() for w in ("fedora", "rhel", "centos")):
        return "fedora"
    return ""


def packages_for(missing: Sequence[str], family: str) -> tuple[list[str], list[str]]:
    """The packages that provide ``missing`` for ``family`` (debian or fedora), and the sonames no table knows."""
    column = 1 if family == "fedora" else 0
    known = [PACKAGES[s][column] for s in missing if s in PACKAGES]
    unknown = [s for s in missing if s not in PACKAGES]
    return list(dict.fromkeys(known)), unknown


def has_display(platform: str, env: Mapping[str, str]) -> bool:
    """Whether ``platform`` has a display to draw on (headless platforms need none)."""
    if platform == "xcb":
        return bool(env.get("DISPLAY"))
    if platform.startswith("wayland"):
        return bool(env.get("WAYLAND_DISPLAY"))
    return True


NO_DISPLAY = (
    "GRU Viewer cannot open its window: no display was found (neither DISPLAY nor WAYLAND_DISPLAY is set).\n"
    "Run it from a desktop session, or over SSH with X forwarding (ssh -X).\n"
    "Without a display the command line works: `gru-viewer index DIR`, `gru-viewer analyze DIR --report FILE.pdf`;\n"
    "`gru-viewer --self-test` checks this installation end to end. (QT_QPA_PLATFORM=offscreen runs the window "
    "invisibly.)"
)


_INSTALLERS = {"debian": ("Debian/Ubuntu", "apt-get install -y"), "fedora": ("Fedora/RHEL", "dnf install -y")}


def install_command(missing: Sequence[str], family: str | None = None, sudo: bool = True) -> str:
    """The one command line that installs ``missing`` on ``family`` (default: this machine's; "" when unknown).

    Without ``sudo`` (run as root, by `make run`) apt runs quietly and without questions.
    """
    family = distro_family() if family is None else family
    pkgs, _ = packages_for(missing, family)
    if family not in _INSTALLERS or not pkgs:
        return ""
    tool = _INSTALLERS[family][1]
    if sudo:
        tool = "sudo " + tool
    elif family == "debian":
        tool = "DEBIAN_FRONTEND=noninteractive " + tool + " -qq"
    return f"{tool} {' '.join(pkgs)}"


def install_commands(missing: Sequence[str], family: str) -> list[str]:
    """The labelled command lines for the user: the family's own, or every known family's when it is unknown."""
    families = [family] if family in _INSTALLERS else list(_INSTALLERS)
    commands = [(_INSTALLERS[f][0], install_command(missing, f)) for f in families]
    return [f"{label}: {command}" for label, command in commands if command]


def _library_problem(platform: str, plugin: Path, missing: Sequence[str], family: str) -> str:
    names = ", ".join(missing)
    lines = [
        f"GRU Viewer cannot open its window: Qt's '{platform}' platform plugin needs system libraries that are "
        f"not installed: {names}.",
    ]
    commands = install_commands(missing, family)
    if commands:
        lines.append("Install them with:")
        lines += [f"    {c}" for c in commands]
    _, unknown = packages_for(missing, family or "debian")
    if unknown:
        lines.append(
            f"No package is known here for {', '.join(unknown)}; your distribution's package search names it "
            "(Debian/Ubuntu: apt-file search NAME; Fedora: dnf provides '*/NAME')."
        )
    lines.append(f"(Checked with ldd on {plugin}.) Then start GRU Viewer again.")
    return "\n".join(lines)


def check(
    env: Mapping[str, str] | None = None,
    *,
    platform: str = sys.platform,
    ldd: LddFn = run_ldd,
    family: str | None = None,
) -> Preflight:
    """Check that Qt can start a GUI here; never raises, never loads Qt.

    The first requested platform whose display is present and whose plugin has all its libraries wins; when
    none does, the problem of the first one that has a display (else the display problem) is returned.
    """
    env = dict(os.environ if env is None else env)
    platforms = requested_platforms(env) or ["xcb"]
    if not platform.startswith("linux"):
        return Preflight(platform=platforms[0])
    usable = [p for p in platforms if has_display(p, env)]
    if not usable:
        return Preflight(platform=platforms[0], problem=NO_DISPLAY)
    family = distro_family() if family is None else family
    failures: list[Preflight] = []
    for name in usable:
        plugin = find_plugin(name, env)
        if plugin is None:
            failures.append(
                Preflight(
                    platform=name,
                    problem=f"GRU Viewer cannot open its window: Qt's platform plugin '{name}' "
                    "(QT_QPA_PLATFORM) is not part of this installation.",
                )
            )
            continue
        missing = missing_libraries(ldd(plugin, env))
        if not missing:
            return Preflight(platform=name, plugin=plugin)
        failures.append(
            Preflight(name, _library_problem(name, plugin, missing, family), missing=missing, plugin=plugin)
        )
    return failures[0]


def missing_for_platform(
    name: str, env: Mapping[str, str] | None = None, ldd: LddFn = run_ldd
) -> tuple[str, ...]:
    """The libraries plugin ``name`` cannot load, whatever the display: what `make run` installs up front."""
    env = dict(os.environ if env is None else env)
    plugin = find_plugin(name, env)
    return missing_libraries(ldd(plugin, env)) if plugin is not None else ()
