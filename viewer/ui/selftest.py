"""``gru-viewer --self-test``: the installed application checks itself end to end, without a display.

It writes the demo phantom study to a temporary folder, opens it in the real :class:`MainWindow` on Qt's
offscreen platform, analyses the loaded volume with the shipped model, writes the PDF and DICOM reports and
checks each result. One line per check (``ok``/``FAIL``/``skip``) goes to ``out``; the exit status is 0 when
every check passed and 1 otherwise, with the failing check named on the last line. It runs the same from a
source checkout and from the PyInstaller bundle (resources through :func:`viewer.resources.resource_path`), so
it is what ``make package`` runs on the bundle it built.

Nothing is written outside the temporary folder: the header cache, the settings and the de-identification key
are pointed there for the run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from viewer.errors import ViewerError

if TYPE_CHECKING:
    from PySide6.QtCore import QMessageLogContext, QtMsgType

OFFSCREEN = "offscreen"
DEFAULT_TIMEOUT_S = 180.0
DEMO_MATRIX = 256

_PRIVATE_DIRS = {
    "GRU_VIEWER_CACHE_DIR": "cache",
    "GRU_VIEWER_SETTINGS_DIR": "settings",
    "GRU_VIEWER_DATA_DIR": "data",
}


class CheckFailed(Exception):
    """A check found something wrong; the message says what."""


class _Skipped(Exception):
    """A check could not run because one it needs failed."""


@dataclass
class CheckResult:
    """One self-test check: name, status ("ok", "FAIL" or "skip"), detail and duration."""

    name: str
    status: str  # "ok", "FAIL" or "skip"
    detail: str
    seconds: float


@dataclass
class _State:
    tmp: Path
    timeout_s: float
    values: dict[str, Any] = field(default_factory=dict)

    def need(self, *keys: str) -> tuple[Any, ...]:
        missing = [k for k in keys if k not in self.values]
        if missing:
            raise _Skipped(f"needs {', '.join(missing)}")
        return tuple(self.values[k] for k in keys)


@contextlib.contextmanager
def _private_environment(tmp: Path) -> Iterator[None]:
    """Point the cache, settings and data folders into ``tmp`` for the run, then restore the environment."""
    saved = {k: os.environ.get(k) for k in _PRIVATE_DIRS}
    for key, sub in _PRIVATE_DIRS.items():
        os.environ[key] = str(tmp / sub)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# -- the checks ----------------------------------------------------------------------------------------------


def check_resources(state: _State) -> str:
    """The resources folder and the application icon are there."""
    from viewer.resources import resources_root

    root = resources_root()
    if not root.is_dir():
        raise CheckFailed(f"the resources folder is missing: {root}")
    icon = root / "icons" / "gru-viewer.svg"
    if not icon.is_file():
        raise CheckFailed(f"the application icon is missing: {icon}")
    return str(root)


def check_model(state: _State) -> str:
    """The shipped model loads and its weights match the SHA-256 on its card."""
    from viewer.analysis.model_cache import load_model
    from viewer.model.card import default_model_paths, sha256_file

    try:
        model, card = load_model()
    except ViewerError as exc:
        raise CheckFailed(str(exc)) from exc
    weights = default_model_paths().weights
    if sha256_file(weights) != card.sha256:  # load_model checked it too; say so in the output
        raise CheckFailed("the weights' SHA-256 differs from the model card's")
    state.values["model"] = (model, card)
    return f"{card.name} {card.version}, SHA-256 {card.sha256[:16]}… verified against its card"


def check_codecs(state: _State) -> str:
    """The decoders a PyInstaller bundle can lose (hidden imports), and a real round trip through two."""
    import numpy as np
    from pydicom import uid as tsuids
    from pydicom.pixels import get_decoder

    from viewer.dicom.index import scan
    from viewer.dicom.readers import load_stack
    from viewer.synth.writer import SeriesMeta, axial_geometry, write_ct_series

    wanted = {
        tsuids.RLELossless: "pylibjpeg",
        tsuids.JPEG2000Lossless: "pylibjpeg",
        tsuids.JPEGBaseline8Bit: "pylibjpeg",
        tsuids.JPEGLosslessSV1: "gdcm",
    }
    for syntax, plugin in wanted.items():
        available = set(get_decoder(syntax).available_plugins)
        if plugin not in available:
            raise CheckFailed(f"no {plugin} decoder for {syntax.name} (have: {', '.join(sorted(available))})")
    import gdcm  # GDCM's own reader is the fallback for what pydicom's plugins refuse

    hu = (np.arange(4 * 32 * 32, dtype=np.float32).reshape(4, 32, 32) % 2000) - 1000
    positions, orientation = axial_geometry(4, 5.0, (0.5, 0.5), 32)
    for syntax in (tsuids.RLELossless, tsuids.JPEG2000Lossless):
        folder = state.tmp / "codecs" / syntax.name.replace(" ", "_")
        write_ct_series(
            hu,
            folder,
            positions=positions,
            orientation=orientation,
            pixel_spacing=(0.5, 0.5),
            slice_thickness=5.0,
            meta=SeriesMeta.invented("SELFTEST^CODEC", "SELFTEST", syntax.name),
            transfer_syntax=syntax,
        )
        stacks = list(scan(folder, use_cache=False, workers=1).stacks())
        if len(stacks) != 1:
            raise CheckFailed(f"{syntax.name}: the written series indexed as {len(stacks)} stacks")
        volume = load_stack(stacks[0])
        if volume.array.shape != hu.shape or not np.array_equal(volume.array, hu):
            raise CheckFailed(f"{syntax.name}: decoded pixels differ from those written")
    return f"pylibjpeg (RLE, JPEG 2000, JPEG), GDCM {gdcm.Version.GetVersion()}; RLE and JPEG 2000 round trips exact"


def check_demo_study(state: _State) -> str:
    """A phantom demo study can be written."""
    from viewer.synth.dataset import write_phantom_dataset

    manifest = write_phantom_dataset(state.tmp / "demo", studies=1, seed=0, matrix=DEMO_MATRIX)
    study = manifest.studies[0]
    state.values["demo"] = manifest
    return f"{len(study.sop_uids)} slices of {DEMO_MATRIX}², {'bleed' if study.label else 'no bleed'} ({study.kind})"


def _quiet_offscreen_notes(mode: QtMsgType, context: QMessageLogContext, message: str) -> None:
    """Qt's offscreen platform says it cannot resize or raise windows: true, and not a fault of the app."""
    if "does not support" not in message:
        sys.stderr.write(message + "\n")


def check_window(state: _State) -> str:
    """Open the demo folder in the main window and wait for its first series to load."""
    from PySide6.QtCore import QEventLoop, QTimer, qInstallMessageHandler
    from PySide6.QtGui import QGuiApplication

    from viewer.ui.app import create_application
    from viewer.ui.error_dialog import relay
    from viewer.ui.main_window import MainWindow
    from viewer.ui.settings import ViewerSettings

    (manifest,) = state.need("demo")
    state.values["previous_handler"] = qInstallMessageHandler(_quiet_offscreen_notes)
    app = create_application()
    platform = QGuiApplication.platformName()
    window = MainWindow(ViewerSettings(state.tmp / "settings" / "gru-viewer.ini"))
    state.values["window"] = window
    window.show()
    errors_before = len(relay().shown)
    loop = QEventLoop()
    outcome: dict[str, str] = {}

    def loaded(uid: str) -> None:
        outcome["loaded"] = uid
        loop.quit()

    def failed(uid: str, message: str) -> None:
        outcome["failed"] = message
        loop.quit()

    def poll_errors() -> None:
        if len(relay().shown) > errors_before:
            outcome["failed"] = str(relay().shown[-1])
            loop.quit()

    window.volume_loaded.connect(loaded)
    window.load_failed.connect(failed)
    poll = QTimer()
    poll.timeout.connect(poll_errors)
    poll.start(100)
    QTimer.singleShot(int(state.timeout_s * 1000), loop.quit)
    t0 = time.perf_counter()
    window.open_paths([str(manifest.root)])
    if not outcome:
        loop.exec()
    poll.stop()
    app.processEvents()
    if "failed" in outcome:
        raise CheckFailed(f"the demo study did not load: {outcome['failed']}")
    if "loaded" not in outcome:
        raise CheckFailed(f"the demo study did not load within {state.timeout_s:g} s")
    volume = window.current_volume()
    if volume is None:
        raise CheckFailed("the window reported a loaded volume but holds none")
    expected = (len(manifest.studies[0].sop_uids), DEMO_MATRIX, DEMO_MATRIX)
    if tuple(volume.array.shape) != expected:
        raise CheckFailed(f"the volume is {tuple(volume.array.shape)}, expected {expected}")
    state.values["volume"] = volume
    shape = "×".join(str(n) for n in volume.array.shape)
    return f"Qt platform '{platform}', volume {shape} loaded in {time.perf_counter() - t0:.1f} s"


def check_analysis(state: _State) -> str:
    """The model analyses the demo volume into a sane result with the expected finding."""
    import numpy as np

    from viewer.analysis.run import analyze_volume

    (model, card), volume, manifest = state.need("model", "volume", "demo")
    result = analyze_volume(volume, model, card)
    if not np.isfinite(result.probability) or not 0.0 <= result.probability <= 1.0:
        raise CheckFailed(f"the study probability is {result.probability}")
    if len(result.slice_probabilities) != volume.array.shape[0]:
        raise CheckFailed("there is not one slice probability per slice")
    if not result.key_slices or not result.gates:
        raise CheckFailed("the result holds no key slices or no gate traces")
    if not result.assessed:
        raise CheckFailed(f"the demo study is not assessed: {' '.join(result.reasons)}")
    expected = bool(manifest.studies[0].label)
    if result.positive != expected:
        raise CheckFailed(
            f"the finding is '{result.finding}' (p = {result.probability:.3f}) but the demo study "
            f"{'has' if expected else 'has no'} bleed"
        )
    state.values["result"] = result
    return f"{result.finding} (p = {result.probability:.3f}, threshold {result.threshold:.3g}) on {result.device}"


def check_report(state: _State) -> str:
    """The report of that result is written as a PDF and as a DICOM Encapsulated PDF."""
    import pydicom

    from viewer.report import ReportOptions, build_report, save_dicom, save_pdf

    (_model, card), volume, result = state.need("model", "volume", "result")
    built = build_report(volume, result, card, ReportOptions())
    out = state.tmp / "report"
    pdf = save_pdf(built, out / "report.pdf")
    data = pdf.read_bytes()
    if len(data) < 1024 or not data.startswith(b"%PDF"):
        raise CheckFailed(f"the PDF is not a PDF ({len(data)} bytes)")
    dcm = save_dicom(built, out / "dicom")
    ds = pydicom.dcmread(dcm)
    if not bytes(ds.EncapsulatedDocument).startswith(b"%PDF"):
        raise CheckFailed("the DICOM report does not encapsulate a PDF")
    return f"PDF {len(data) // 1024} KiB, DICOM Encapsulated PDF {dcm.stat().st_size // 1024} KiB"


CHECKS: tuple[tuple[str, Callable[[_State], str]], ...] = (
    ("resources", check_resources),
    ("model", check_model),
    ("codecs", check_codecs),
    ("demo study", check_demo_study),
    ("viewer window", check_window),
    ("analysis", check_analysis),
    ("report", check_report),
)


def _close_window(state: _State) -> None:
    window = state.values.pop("window", None)
    if window is not None:
        from PySide6.QtWidgets import QApplication

        window.close()
        app = QApplication.instance()
        if app is not None:
            app.processEvents()
    if "previous_handler" in state.values:
        from PySide6.QtCore import qInstallMessageHandler

        qInstallMessageHandler(state.values.pop("previous_handler"))


def run_checks(out: Callable[[str], None] = print, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[CheckResult]:
    """Run every check in order and print one line each; a check whose input failed is skipped."""
    results: list[CheckResult] = []
    with tempfile.TemporaryDirectory(prefix="gru-viewer-selftest-") as tmp_name:
        tmp = Path(tmp_name)
        state = _State(tmp, timeout_s)
        with _private_environment(tmp):
            try:
                for name, check in CHECKS:
                    t0 = time.perf_counter()
                    try:
                        status, detail = "ok", check(state)
                    except _Skipped as exc:
                        status, detail = "skip", str(exc)
                    except CheckFailed as exc:
                        status, detail = "FAIL", str(exc)
                    except Exception as exc:  # an unexpected error is a failed check, with its type
                        status, detail = "FAIL", f"{type(exc).__name__}: {exc}"
                    result = CheckResult(name, status, detail, time.perf_counter() - t0)
                    results.append(result)
                    out(f"{status:<4}  {name:<13} {detail} [{result.seconds:.1f} s]")
            finally:
                _close_window(state)
    return results


def run_self_test(out: Callable[[str], None] = print, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
    """Run the self-test; returns the exit status (0 all passed, 1 a check failed or was skipped).

    Qt must run offscreen: set ``QT_QPA_PLATFORM=offscreen`` before Qt is first imported (the CLI does).
    """
    from viewer import __version__

    t0 = time.perf_counter()
    out(f"gru-viewer {__version__} self-test")
    results = run_checks(out, timeout_s)
    bad = [r for r in results if r.status != "ok"]
    if bad:
        first = next((r for r in bad if r.status == "FAIL"), bad[0])
        out(f"self-test FAILED: {first.name}: {first.detail}")
        return 1
    out(f"self-test passed: {len(results)} checks in {time.perf_counter() - t0:.1f} s")
    return 0
