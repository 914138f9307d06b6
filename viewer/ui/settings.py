"""Persistent preferences through QSettings: layout, folders, recent list, W/L presets, cine rate, analysis
device, the export dialog's last folder and de-identify choice, and the PACS receiver.

Values are stored as plain strings/JSON so they read back the same on every platform backend. Where they are
kept: ``$GRU_VIEWER_SETTINGS_DIR/gru-viewer.ini`` when that variable is set (tests point it at a temporary
folder), an explicit ``path`` when given, else the platform's user settings for "GRU Viewer".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from viewer.analysis.display import SCALINGS
from viewer.pacs.nodes import DEFAULT_CALLING_AE, DEFAULT_LISTEN_BIND, DEFAULT_LISTEN_PORT, ListenerConfig

ORGANIZATION = "GRU Viewer"
APPLICATION = "gru-viewer"
MAX_RECENT = 10
DEFAULT_CINE_FPS = 10.0
#: Where the analysis runs: ``"auto"`` (a GPU when one is usable, else the CPU) or ``"cpu"``.
ANALYSIS_DEVICES: tuple[str, ...] = ("auto", "cpu")


@dataclass(frozen=True, slots=True)
class WindowPreset:
    """A named window (center/width in modality units, HU for CT)."""

    name: str
    center: float
    width: float


# Keys 1–6, in this order (the usual head-CT set; lung for the apices and sinuses).
DEFAULT_PRESETS: tuple[WindowPreset, ...] = (
    WindowPreset("Brain", 40.0, 80.0),
    WindowPreset("Subdural", 75.0, 215.0),
    WindowPreset("Stroke", 40.0, 40.0),
    WindowPreset("Bone", 600.0, 2800.0),
    WindowPreset("Soft tissue", 50.0, 400.0),
    WindowPreset("Lung", -600.0, 1500.0),
)


def settings_path_override() -> Path | None:
    """The settings file under ``$GRU_VIEWER_SETTINGS_DIR`` when it is set."""
    folder = os.environ.get("GRU_VIEWER_SETTINGS_DIR")
    return Path(folder) / "gru-viewer.ini" if folder else None


class ViewerSettings:
    """Typed access to the viewer's QSettings."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        target = Path(path) if path is not None else settings_path_override()
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.qsettings = QSettings(str(target), QSettings.Format.IniFormat)
        else:
            self.qsettings = QSettings(
                QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION
            )

    @property
    def file_name(self) -> str:
        """Path of the settings file."""
        return self.qsettings.fileName()

    def sync(self) -> None:
        """Write pending changes to disk."""
        self.qsettings.sync()

    def _str(self, key: str, default: str = "") -> str:
        value = self.qsettings.value(key, default)
        return str(value) if value is not None else default

    # Window layout -------------------------------------------------------------------------------------------
    def window_geometry(self) -> QByteArray | None:
        """The main window's saved geometry, or None."""
        value = self.qsettings.value("window/geometry")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def window_state(self) -> QByteArray | None:
        """The main window's saved dock and toolbar state, or None."""
        value = self.qsettings.value("window/state")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_window_layout(self, geometry: QByteArray, state: QByteArray) -> None:
        """Save the main window's geometry and dock/toolbar state."""
        self.qsettings.setValue("window/geometry", geometry)
        self.qsettings.setValue("window/state", state)

    # Folders -------------------------------------------------------------------------------------------------
    @property
    def last_folder(self) -> str:
        """The folder opened last (empty before the first)."""
        return self._str("paths/last_folder")

    @last_folder.setter
    def last_folder(self, folder: str) -> None:
        self.qsettings.setValue("paths/last_folder", str(folder))

    def recent(self) -> list[str]:
        """Recently opened paths, newest first."""
        try:
            items = json.loads(self._str("paths/recent", "[]"))
        except json.JSONDecodeError:
            return []
        return [str(p) for p in items if isinstance(p, str)][:MAX_RECENT]

    def add_recent(self, path: str) -> list[str]:
        """Put ``path`` first in the recent list and return the list."""
        path = str(path)
        items = [path] + [p for p in self.recent() if p != path]
        items = items[:MAX_RECENT]
        self.qsettings.setValue("paths/recent", json.dumps(items))
        return items

    def clear_recent(self) -> None:
        """Empty the recent list."""
        self.qsettings.setValue("paths/recent", "[]")

    # Display -------------------------------------------------------------------------------------------------
    def presets(self) -> list[WindowPreset]:
        """Window/level presets (the defaults when none or unreadable are saved)."""
        raw = self._str("display/presets")
        if not raw:
            return list(DEFAULT_PRESETS)
        try:
            items = [
                WindowPreset(str(d["name"]), float(d["center"]), float(d["width"])) for d in json.loads(raw)
            ]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            return list(DEFAULT_PRESETS)
        return items[: len(DEFAULT_PRESETS)] or list(DEFAULT_PRESETS)

    def set_presets(self, presets: list[WindowPreset]) -> None:
        """Save window/level presets (widths below 1 become 1)."""
        data = [{"name": p.name, "center": p.center, "width": max(1.0, p.width)} for p in presets]
        self.qsettings.setValue("display/presets", json.dumps(data))

    @property
    def cine_fps(self) -> float:
        """Cine speed in frames per second, 1…60."""
        try:
            return min(60.0, max(1.0, float(self._str("display/cine_fps", str(DEFAULT_CINE_FPS)))))
        except ValueError:
            return DEFAULT_CINE_FPS

    @cine_fps.setter
    def cine_fps(self, fps: float) -> None:
        self.qsettings.setValue("display/cine_fps", str(float(fps)))

    @property
    def cache_mb(self) -> int | None:
        """Volume cache limit in MiB; None means the default (a quarter of memory, at most 2 GiB)."""
        raw = self._str("memory/cache_mb")
        try:
            return max(64, int(raw)) if raw else None
        except ValueError:
            return None

    @cache_mb.setter
    def cache_mb(self, mb: int | None) -> None:
        self.qsettings.setValue("memory/cache_mb", "" if mb is None else str(int(mb)))

    # Analysis ------------------------------------------------------------------------------------------------
    @property
    def analysis_device(self) -> str:
        """``"auto"`` or ``"cpu"`` (anything else read back from the file counts as ``"auto"``)."""
        value = self._str("analysis/device", "auto")
        return value if value in ANALYSIS_DEVICES else "auto"

    @analysis_device.setter
    def analysis_device(self, device: str) -> None:
        if device not in ANALYSIS_DEVICES:
            raise ValueError(f"analysis device must be one of {ANALYSIS_DEVICES}, got {device!r}")
        self.qsettings.setValue("analysis/device", device)

    @property
    def jump_to_key_slice(self) -> bool:
        """Whether a fresh result moves the view to its first key slice (unless the reader scrolled meanwhile)."""
        return self._str("analysis/jump_to_key_slice", "true") != "false"

    @jump_to_key_slice.setter
    def jump_to_key_slice(self, on: bool) -> None:
        self.qsettings.setValue("analysis/jump_to_key_slice", "true" if on else "false")

    @property
    def saliency_scaling(self) -> str:
        """How the pixel-saliency overlay is scaled: ``"series"`` (default) or ``"slice"``
        (:mod:`viewer.analysis.display`); anything else read back counts as ``"series"``."""
        value = self._str("analysis/saliency_scaling", "series")
        return value if value in SCALINGS else "series"

    @saliency_scaling.setter
    def saliency_scaling(self, scaling: str) -> None:
        if scaling not in SCALINGS:
            raise ValueError(f"saliency scaling must be one of {SCALINGS}, got {scaling!r}")
        self.qsettings.setValue("analysis/saliency_scaling", scaling)

    # Reformat layouts ----------------------------------------------------------------------------------------
    @property
    def mpr_linked(self) -> bool:
        """Whether the reformat panes share window/level and zoom (default) or each keeps its own."""
        return self._str("mpr/linked", "true") != "false"

    @mpr_linked.setter
    def mpr_linked(self, on: bool) -> None:
        self.qsettings.setValue("mpr/linked", "true" if on else "false")

    # Export --------------------------------------------------------------------------------------------------
    @property
    def last_export_folder(self) -> str:
        """Where the last report went (File ▸ Export Report… starts there); empty before the first export."""
        return self._str("export/last_folder")

    @last_export_folder.setter
    def last_export_folder(self, folder: str) -> None:
        self.qsettings.setValue("export/last_folder", str(folder))

    @property
    def export_deidentify(self) -> bool:
        """Whether the export dialog's "De-identify" box starts ticked (the last choice)."""
        return self._str("export/deidentify", "false").lower() == "true"

    @export_deidentify.setter
    def export_deidentify(self, on: bool) -> None:
        self.qsettings.setValue("export/deidentify", "true" if on else "false")

    # PACS receiver -------------------------------------------------------------------------------------------
    @property
    def receiver_enabled(self) -> bool:
        """Whether the DICOM receiver (C-STORE SCP) runs while a window is open; off unless chosen."""
        return self._str("pacs/receiver_enabled", "false") == "true"

    @receiver_enabled.setter
    def receiver_enabled(self, on: bool) -> None:
        self.qsettings.setValue("pacs/receiver_enabled", "true" if on else "false")

    def receiver_config(self) -> ListenerConfig:
        """Where the receiver listens and whom it accepts (not validated: the receiver checks it on start)."""
        try:
            allowed = tuple(str(a) for a in json.loads(self._str("pacs/receiver_allowed", "[]")))
        except (json.JSONDecodeError, TypeError):
            allowed = ()
        try:
            port = int(self._str("pacs/receiver_port", str(DEFAULT_LISTEN_PORT)))
        except ValueError:
            port = DEFAULT_LISTEN_PORT
        return ListenerConfig(
            ae_title=self._str("pacs/receiver_ae", DEFAULT_CALLING_AE) or DEFAULT_CALLING_AE,
            bind=self._str("pacs/receiver_bind", DEFAULT_LISTEN_BIND) or DEFAULT_LISTEN_BIND,
            port=port,
            allowed=allowed,
        )

    def set_receiver_config(self, config: ListenerConfig) -> None:
        """Save the receiver's address and allowed calling AE titles."""
        self.qsettings.setValue("pacs/receiver_ae", config.ae_title)
        self.qsettings.setValue("pacs/receiver_bind", config.bind)
        self.qsettings.setValue("pacs/receiver_port", str(int(config.port)))
        self.qsettings.setValue("pacs/receiver_allowed", json.dumps(list(config.allowed)))
