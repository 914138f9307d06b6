"""Tools ▸ Analyze Series: runs the model on the series on screen and shows what it found.

The analysis (model loading included: the first load reads and hashes the weights) runs on a
:class:`~viewer.ui.workers.WorkerThread` from the window's pool, with progress and Cancel in the status bar, so
scrolling, windowing and switching series go on meanwhile. Its signals carry a :class:`~viewer.ui.jobs.JobTag`
(stack uid + analysis generation), like the load jobs: a cancelled or superseded job's late result is dropped.

Results are kept per stack uid for the session. A result is drawn only over the series it was computed on: the
panel and the overlay are cleared the moment another series is opened, and a result is shown again only after
``result.matches(volume)`` holds for the loaded volume on screen. Pixel saliency of slices the analysis did not
compute is computed on demand, one slice at a time on a worker, for the slice on screen.

Each result comes with its :class:`~viewer.analysis.session.AnalysisSession`, which computes the on-demand maps and
holds the model inputs in memory to do so, so only the :data:`LIVE_RESULTS` most recently shown results keep an
open session; older ones are ``close()``d (their computed maps stay).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QWidget

from viewer.analysis.display import (
    HIDDEN_COLOUR_LIMIT,
    format_contribution,
    slice_weight,
    to_display_map,
)
from viewer.analysis.result import AnalysisResult
from viewer.analysis.session import (
    AnalysisOutcome,
    AnalysisSession,
    analyse_for_display,
    analysis_error,
    slice_display_map,
)
from viewer.dicom.stacks import Stack
from viewer.dicom.volume import Volume
from viewer.errors import ViewerError
from viewer.model.intended_use import size_refusal
from viewer.ui.error_dialog import report_exception
from viewer.ui.help_page import show_analysis_help
from viewer.ui.image_view import ImageView
from viewer.ui.jobs import JobTag
from viewer.ui.results_panel import ResultsPanel, format_probability
from viewer.ui.saliency_overlay import SaliencyOverlay
from viewer.ui.settings import ViewerSettings
from viewer.ui.workers import Handlers, JobHost, WorkerThread

log = logging.getLogger(__name__)


class SeriesOnScreen(Protocol):
    """The series on screen as the analysis needs to know it (the main window is one)."""

    @property
    def current_uid(self) -> str | None: ...

    @property
    def loading(self) -> bool: ...

    def current_volume(self) -> Volume | None: ...

    def stack(self, uid: str) -> Stack | None: ...


class DockFactory(Protocol):
    """Adds ``widget`` as a dock of the window, listed under View (the main window's ``add_dock``)."""

    def __call__(
        self,
        widget: QWidget,
        title: str,
        area: Qt.DockWidgetArea,
        *,
        min_width: int = 0,
        width: int | None = None,
    ) -> QDockWidget: ...


LIVE_RESULTS = 3
JOB_KEY = "analyze"


@dataclass(eq=False, slots=True)
class SaliencyTag:
    """An on-demand pixel-saliency job: slice ``k`` of ``session`` (compared by identity)."""

    stack_uid: str
    k: int
    session: AnalysisSession
    scaling: str = "series"


class AnalysisController(QObject):
    """The Analyze command, its worker, the results dock and the saliency overlay of one window.

    The window composes it: it hands over the image view, the series on screen, where jobs run, the settings and
    a way to add a dock, connects ``on_series_opened`` and ``on_volume_loaded`` to its own signals, and places
    :attr:`analyze_action`, :attr:`overlay_action` and :attr:`help_action` in its menus and toolbar.

    Signals
    -------
    started(stack_uid)
    result_ready(stack_uid, result)
        An analysis finished (whichever series is on screen now).
    result_shown(stack_uid)
        A result is on screen: panel, plots, overlay and slider marks.
    failed(stack_uid, message)
    cancelled(stack_uid)
    saliency_ready(stack_uid, k)
        An on-demand pixel map of slice ``k`` is ready.
    """

    started = Signal(str)
    result_ready = Signal(str, object)
    result_shown = Signal(str)
    failed = Signal(str, str)
    cancelled = Signal(str)
    saliency_ready = Signal(str, int)

    def __init__(
        self,
        view: ImageView,
        series: SeriesOnScreen,
        jobs: JobHost,
        settings: ViewerSettings,
        add_dock: DockFactory,
        parent: QWidget,
    ) -> None:
        super().__init__(parent)
        self.view = view
        self.series = series
        self.jobs = jobs
        self.settings = settings
        #: Weights to analyse with; None = the shipped default (tests point this at their own file).
        self.model_path: str | Path | None = None
        self.sessions: dict[str, AnalysisSession] = {}
        self._display_maps: dict[str, dict[int, np.ndarray]] = {}
        self._unavailable: dict[str, set[int]] = {}
        self._live: list[str] = []
        self._generation = 0
        self._thread: WorkerThread | None = None
        self._tag: JobTag | None = None
        self._pending_uid: str | None = None
        self._asked_at: tuple[str, int] | None = None
        self._shown: AnalysisSession | None = None
        self._saliency_thread: WorkerThread | None = None
        self._wanted: tuple[str, int] | None = None

        self.panel = ResultsPanel()
        self.dock = add_dock(
            self.panel, "Analysis", Qt.DockWidgetArea.RightDockWidgetArea, min_width=400, width=470
        )
        self.dock.hide()
        self.overlay = SaliencyOverlay(self.view, on_missing=self._request_saliency)
        self.overlay.set_scaling(settings.saliency_scaling)
        self._sync_overlay_controls()

        self.analyze_action = QAction("&Analyze Series", parent)
        self.analyze_action.setShortcut(QKeySequence("Ctrl+R"))
        self.analyze_action.setStatusTip("Run the slice-GRU model on the series on screen (Ctrl+R)")
        self.analyze_action.setToolTip("Analyze the series on screen (Ctrl+R)")
        self.analyze_action.triggered.connect(self.analyze)

        self.overlay_action = QAction("Pixel Saliency &Overlay", parent)
        self.overlay_action.setCheckable(True)
        self.overlay_action.setChecked(self.overlay.enabled)
        self.overlay_action.setShortcut(QKeySequence("O"))
        self.overlay_action.setStatusTip("Show or hide the pixel saliency map over the image (O)")
        self.overlay_action.toggled.connect(self.set_overlay_enabled)

        self.help_action = QAction("How to Read the &Analysis", parent)
        self.help_action.triggered.connect(lambda _=False: show_analysis_help(parent))

        self.panel.analyze_requested.connect(self.analyze)
        self.panel.slice_clicked.connect(self.view.set_slice)
        self.panel.overlay_toggled.connect(self.overlay_action.setChecked)
        self.panel.opacity_changed.connect(self.overlay.set_opacity)
        self.panel.threshold_changed.connect(self.overlay.set_threshold)
        self.panel.scaling_changed.connect(self.set_scaling)
        self.view.slice_changed.connect(self._on_slice_changed)

    # -- state ------------------------------------------------------------------------------------------------

    @property
    def results(self) -> dict[str, AnalysisResult]:
        """The latest result of every series analysed, by stack uid."""
        return {uid: session.result for uid, session in self.sessions.items()}

    @property
    def shown_session(self) -> AnalysisSession | None:
        """The session whose result is on screen, or None."""
        return self._shown

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def running_uid(self) -> str | None:
        return self._tag.stack_uid if self._tag is not None else None

    @property
    def shown_result(self) -> AnalysisResult | None:
        """The result on screen (panel and overlay), or None."""
        return self._shown.result if self._shown is not None else None

    def display_map(self, uid: str, k: int) -> np.ndarray | None:
        """The pixel map of slice ``k`` of series ``uid`` as drawn (uint8, 255 = strongest), if computed."""
        return self._display_maps.get(uid, {}).get(k)

    def _accepting(self) -> bool:
        return self.jobs.pool.accepting

    def _status(self, text: str, ms: int = 5000) -> None:
        self.jobs.status_bar.showMessage(text, ms)

    # -- starting and stopping --------------------------------------------------------------------------------

    def analyze(self) -> bool:
        """Analyse the series on screen (once it has loaded); True when an analysis started or is queued."""
        if not self._accepting():
            return False
        uid = self.series.current_uid
        if uid is None:
            self._status("Open a series first, then Analyze (Ctrl+R).")
            return False
        self.dock.show()
        self._asked_at = (
            uid,
            self.view.index,
        )  # where the reader was: a result moves the view only if still there
        volume = self.series.current_volume()
        stack = self.series.stack(uid)
        refusal = size_refusal((stack.n_slices, stack.rows, stack.columns)) if stack is not None else ""
        if refusal:
            # Known from the headers: no need to wait for (or keep loading) the pixels only to refuse them.
            message = str(ViewerError("Cannot analyse the series", refusal))
            self.panel.show_refused(message)
            self._status("The analysis cannot run on this series", 5000)
            self.failed.emit(uid, message)
            return False
        if volume is None:
            if self.series.loading:
                self._pending_uid = uid
                self.panel.show_waiting()
                self._status("The analysis starts once the series has loaded.")
                return True
            self._status("The series is not in memory any more: open it again, then Analyze.")
            return False
        self._start(uid, volume)
        return True

    def _start(self, uid: str, volume: Volume) -> None:
        self._pending_uid = None
        if self._thread is not None:
            self._thread.cancel()  # one analysis at a time: the newest request wins
        self._generation += 1
        tag = JobTag(uid, self._generation)
        if self.view.stack_uid == uid:
            self._hide_result()
            self.panel.show_running()
        stack = self.series.stack(uid)
        title = getattr(stack, "label", "") or "series"
        self.jobs.progress.begin(JOB_KEY, f"Analysing {title}", self.cancel)
        self._status("Analysing… the viewer stays usable meanwhile (Esc or Cancel stops it).")
        self._thread = self.jobs.pool.run(
            analyse_for_display,
            volume,
            self.model_path,
            self.settings.analysis_device,
            scaling=self.scaling,
            tag=tag,
            name="analysis",
            handlers=Handlers(
                progress=self._on_progress,
                finished=self._on_result_arrived,
                errored=self._on_errored,
                cancelled=self._on_cancelled,
                stopped=self._on_stopped,
            ),
        )
        self._tag = tag
        self.started.emit(uid)

    def cancel(self) -> None:
        """Stop the running (or queued) analysis; its late result is dropped."""
        pending = self._pending_uid
        self._pending_uid = None
        thread = self._thread
        if thread is None:
            if pending is not None and self.view.stack_uid == pending:
                self.panel.show_cancelled()
            return
        thread.cancel()
        self._thread, self._tag = None, None
        self.jobs.progress.end(JOB_KEY)
        if self.view.stack_uid == thread.tag.stack_uid:
            self.panel.show_cancelled()
        self._status("Analysis cancelled", 3000)

    # -- worker signals ---------------------------------------------------------------------------------------

    def _on_progress(self, tag: JobTag, done: int, total: int, text: str) -> None:
        if tag == self._tag:
            self.jobs.progress.update_job(JOB_KEY, done, total, f"Analysing: {text}" if text else "")

    def _on_result_arrived(self, tag: JobTag, outcome: AnalysisOutcome) -> None:
        """The one place a fresh result arrives: keep its session, then show it if its series is on screen."""
        if tag != self._tag or not self._accepting():
            return
        self._thread, self._tag = None, None
        self.jobs.progress.end(JOB_KEY)
        session = outcome.session
        result = session.result
        uid = tag.stack_uid
        old = self.sessions.get(uid)
        if old is not None and old is not session:
            old.close()
        self.sessions[uid] = session
        self._display_maps[uid] = dict(outcome.display_maps)
        if outcome.scaling != self.scaling:  # the scaling changed while it ran
            self._display_maps[uid] = {k: self._rescaled(session, k) for k in outcome.display_maps}
        self._unavailable[uid] = set()
        self._keep_live(uid)
        done = (
            f"{result.finding} (probability {format_probability(result.probability)})"
            if result.assessed
            else result.finding
        )
        self._status(f"Analysis done: {done}", 8000)
        self.result_ready.emit(uid, result)
        if self.view.stack_uid == uid:
            self._show_if_current(uid)
            self._go_to_evidence(uid, result)

    def _go_to_evidence(self, uid: str, result: AnalysisResult) -> None:
        """Land on the first key slice, unless the reader scrolled since asking (or turned this off)."""
        if result.key_slices and self.settings.jump_to_key_slice and self._asked_at == (uid, self.view.index):
            self.view.set_slice(result.key_slices[0])

    def _on_errored(self, tag: JobTag, exc: BaseException) -> None:
        if tag != self._tag or not self._accepting():
            return
        self._thread, self._tag = None, None
        self.jobs.progress.end(JOB_KEY)
        error = analysis_error(exc)
        message = str(error)
        if self.view.stack_uid == tag.stack_uid:
            self.panel.show_failed(message)
        self._status("The analysis failed", 5000)
        report_exception(error)
        self.failed.emit(tag.stack_uid, message)

    def _on_cancelled(self, tag: JobTag) -> None:
        if isinstance(tag, JobTag) and self._accepting():
            self.cancelled.emit(tag.stack_uid)

    def _on_stopped(self, tag: JobTag) -> None:
        if self._thread is not None and self._thread.tag == tag:
            self._thread, self._tag = None, None
            self.jobs.progress.end(JOB_KEY)

    # -- which result is on screen ----------------------------------------------------------------------------

    def on_series_opened(self, uid: str) -> None:
        """Another series is on screen (loaded or not yet): no result may stay drawn over it."""
        self._hide_result()
        if self._pending_uid is not None and self._pending_uid != uid:
            self._pending_uid = None
        if self._tag is not None and self._tag.stack_uid == uid:
            self.panel.show_running()
        elif uid in self.sessions:
            self.panel.show_empty("Loading the series to show its analysis…")
        else:
            self.panel.show_empty()

    def on_volume_loaded(self, uid: str) -> None:
        """Series ``uid`` finished loading: start a queued analysis of it, or show its result."""
        if uid != self.view.stack_uid:
            return
        if self._pending_uid == uid:
            volume = self.series.current_volume()
            if volume is not None:
                self._start(uid, volume)
            return
        if uid in self.sessions:
            self._show_if_current(uid)
        elif self._tag is None or self._tag.stack_uid != uid:
            self.panel.show_empty()

    def _show_if_current(self, uid: str) -> bool:
        """Show ``uid``'s result if that exact series is loaded on screen."""
        session = self.sessions.get(uid)
        result = session.result if session is not None else None
        volume = self.series.current_volume()
        if result is None or self.view.stack_uid != uid or volume is None or not result.matches(volume):
            if result is not None and volume is not None and self.view.stack_uid == uid:
                self.panel.show_empty("The series changed since it was analysed: analyse it again.")
            return False
        self._shown = session
        self._keep_live(uid)
        self.panel.show_result(result, self.view.index)
        self._sync_overlay_controls()
        self.view.set_slice_marks(list(result.key_slices))
        self.overlay.show_maps(lambda k, u=uid, s=session: self._map_for(u, s, k), result.pixel_label)
        self._update_overlay_status()
        self._update_evidence_on_image()
        self.dock.show()
        self.result_shown.emit(uid)
        return True

    def _hide_result(self) -> None:
        self._shown = None
        self._wanted = None
        self.overlay.clear()
        self.view.set_slice_marks([])
        self._update_evidence_on_image()

    def _map_for(self, uid: str, session: AnalysisSession, k: int) -> np.ndarray | None:
        """The overlay's source: only ever the shown result's maps, and only on its own series."""
        if self._shown is not session or self.view.stack_uid != uid:
            return None
        data = self._display_maps.get(uid, {}).get(k)
        if data is not None and data.shape != tuple(session.result.identity.shape[1:]):
            return None
        return data

    def _keep_live(self, uid: str) -> None:
        if uid in self._live:
            self._live.remove(uid)
        self._live.append(uid)
        while len(self._live) > LIVE_RESULTS:
            old = self._live.pop(0)
            if old in self.sessions:
                self.sessions[old].close()

    # -- overlay ----------------------------------------------------------------------------------------------

    def set_overlay_enabled(self, on: bool) -> None:
        """O / View ▸ Pixel Saliency Overlay / the panel's check box."""
        if self.overlay_action.isChecked() != on:
            self.overlay_action.setChecked(on)  # comes back here through toggled
            return
        self.overlay.set_enabled(on)
        self._sync_overlay_controls()
        self._update_overlay_status()
        self._update_evidence_on_image()

    def _sync_overlay_controls(self) -> None:
        overlay = self.overlay
        self.panel.set_overlay_controls(overlay.enabled, overlay.opacity, overlay.threshold, overlay.scaling)

    @property
    def scaling(self) -> str:
        """How the pixel saliency is scaled on screen (and in the PNG and report): ``"series"`` or ``"slice"``."""
        return self.overlay.scaling

    def set_scaling(self, scaling: str) -> None:
        """Scale the pixel saliency to the series or per slice (the panel's combo, Preferences); saved."""
        scaling = "slice" if scaling == "slice" else "series"
        if self.settings.saliency_scaling != scaling:
            self.settings.saliency_scaling = scaling
        if scaling == self.overlay.scaling:
            self._sync_overlay_controls()
            return
        self.overlay.set_scaling(scaling)
        for uid, maps in self._display_maps.items():
            session = self.sessions.get(uid)
            if session is not None:
                self._display_maps[uid] = {k: self._rescaled(session, k) for k in maps}
        self._sync_overlay_controls()
        self.overlay.refresh()

    def _rescaled(self, session: AnalysisSession, k: int) -> np.ndarray:
        """Slice ``k``'s display map of ``session`` (computed already) in the current scaling."""
        result = session.result
        return to_display_map(
            result.pixel_saliency[k], slice_weight(result.slice_probabilities, k, self.scaling)
        )

    # -- the evidence on the image ---------------------------------------------------------------------------

    def _update_evidence_on_image(self) -> None:
        """The hidden-state strip on the slice slider, gates and hidden value in the corner text and the cursor
        readout: shown with the overlay while a result is on screen, cleared otherwise."""
        session = self._shown
        if session is None or not self.overlay.enabled:
            self.view.set_slice_track(None)
            self.view.set_slice_notes(None)
            self.view.set_cursor_note(None)
            return
        result = session.result
        combined = np.asarray(result.hidden_saliency["combined"], dtype=np.float64)
        self.view.set_slice_track(
            combined,
            HIDDEN_COLOUR_LIMIT,
            "Strip: hidden-state evidence per slice (warm: towards bleed, cool: against; "
            f"full colour at ±{HIDDEN_COLOUR_LIMIT:g} logit)",
        )
        self.view.set_slice_notes(lambda k, r=result: slice_notes(r, k))
        self.view.set_cursor_note(lambda k, r=result: cursor_note(r, k))

    def _on_slice_changed(self, k: int) -> None:
        self.panel.set_current_slice(k)
        self._update_overlay_status()

    def _update_overlay_status(self) -> None:
        session = self._shown
        if session is None:
            return
        uid = session.result.identity.stack_uid
        k = self.view.index
        if k in self._display_maps.get(uid, {}):
            self.overlay.set_status("")
        elif k in self._unavailable.get(uid, set()):
            self.overlay.set_status("No map for this slice (analyse again to compute more).")
        else:
            self.overlay.set_status("Computing the map for this slice…")

    def _request_saliency(self, k: int) -> None:
        """The overlay found no map for slice ``k`` on screen: compute it (the latest request wins)."""
        session = self._shown
        if session is None or not self._accepting():
            return
        uid = session.result.identity.stack_uid
        if self.view.stack_uid != uid:  # asked while another series replaces this one on screen
            return
        if k in self._display_maps.get(uid, {}) or k in self._unavailable.get(uid, set()):
            return
        self._wanted = (uid, k)
        if self._saliency_thread is None:
            self._start_saliency()

    def _start_saliency(self) -> None:
        wanted, self._wanted = self._wanted, None
        session = self._shown
        if wanted is None or session is None or wanted[0] != session.result.identity.stack_uid:
            return
        uid, k = wanted
        self._saliency_thread = self.jobs.pool.run(
            slice_display_map,
            session,
            k,
            scaling=self.scaling,
            tag=SaliencyTag(uid, k, session, self.scaling),
            name="saliency",
            handlers=Handlers(
                finished=self._on_saliency,
                errored=self._on_saliency_failed,
                stopped=self._on_saliency_stopped,
            ),
        )

    def _on_saliency(self, tag: SaliencyTag, value: tuple[int, np.ndarray | None]) -> None:
        if not self._accepting() or self.sessions.get(tag.stack_uid) is not tag.session:
            return
        k, data = value
        if data is None:
            self._unavailable.setdefault(tag.stack_uid, set()).add(k)
        else:
            if tag.scaling != self.scaling:  # the scaling changed while it ran
                data = self._rescaled(tag.session, k)
            self._display_maps.setdefault(tag.stack_uid, {})[k] = data
        if self._shown is tag.session:
            if self.view.index == k:
                self.overlay.refresh()
            self._update_overlay_status()
        self.saliency_ready.emit(tag.stack_uid, k)

    def _on_saliency_failed(self, tag: SaliencyTag, exc: BaseException) -> None:
        log.warning("pixel saliency of one slice failed: %s", type(exc).__name__)
        self._unavailable.setdefault(tag.stack_uid, set()).add(tag.k)
        if self._shown is tag.session:
            self._update_overlay_status()

    def _on_saliency_stopped(self, tag: SaliencyTag) -> None:
        if self._saliency_thread is not None and self._saliency_thread.tag is tag:
            self._saliency_thread = None
        if self._wanted is not None and self._accepting():
            self._start_saliency()
        elif self._shown is not None and self.overlay.enabled and self._accepting():
            self._request_saliency(self.view.index)


def slice_notes(result: AnalysisResult, k: int) -> list[str]:
    """The corner-text lines of slice ``k``: mean gates per reader, then the hidden-state evidence."""
    if not 0 <= k < result.identity.n_slices:
        return []
    gates = result.gates

    def pair(gate: str) -> str:
        values = [gates.get(f"{gate}_mean_{d}") for d in ("forward", "reverse")]
        return "/".join("—" if v is None else f"{float(v[k]):.2f}" for v in values)

    return [
        f"Gates fwd/rev z {pair('z')}  r {pair('r')}",
        f"Hidden {format_contribution(result.hidden_saliency['combined'][k])} logit",
    ]


def cursor_note(result: AnalysisResult, k: int) -> str:
    """What the cursor readout adds on slice ``k``: its hidden-state evidence with the sign."""
    if not 0 <= k < result.identity.n_slices:
        return ""
    return f"hidden {format_contribution(result.hidden_saliency['combined'][k])} logit"
