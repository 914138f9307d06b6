"""The main window: study browser (dock), image view (centre), menus, status bar, and the jobs behind them.

Indexing, loading and thumbnails run on :class:`~viewer.ui.workers.WorkerThread`s; their signals carry a tag
(stack uid + load generation), so switching series mid-load never mixes slices of two series. Loaded volumes go
to a memory-bounded LRU cache, so going back to a series is instant.

The window is the composition root of the steps after reading: it builds :attr:`MainWindow.analysis` (an
:class:`~viewer.ui.analysis_controller.AnalysisController`: Analyze, the results dock, the overlay) and
:attr:`MainWindow.export` (an :class:`~viewer.ui.export_controller.ExportController`: File ▸ Export Report…),
hands each the few things it works with (the image view, the series on screen, a
:class:`~viewer.ui.workers.JobHost` with the pool, the progress panel and the status bar, the settings), places
their actions in its menus and toolbar and connects its signals to them. Neither controller knows the window.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QToolBar,
    QWidget,
)

from viewer.dicom.index import StudyIndex
from viewer.dicom.stacks import Stack
from viewer.dicom.volume import Volume
from viewer.errors import ViewerError
from viewer.ui.about import show_about
from viewer.ui.analysis_controller import AnalysisController
from viewer.ui.browser import StudyBrowser
from viewer.ui.cache import VolumeCache
from viewer.ui.error_dialog import report_exception
from viewer.ui.export_controller import ExportController
from viewer.ui.image_view import CursorInfo, ImageView
from viewer.ui.import_log import ImportLog, ImportLogDialog
from viewer.ui.jobs import JobTag, SliceReady, index_paths, load_tagged, make_thumbnails
from viewer.ui.layouts import LayoutController
from viewer.ui.measurement_controller import MeasurementController
from viewer.ui.model_card_dialog import show_model_card
from viewer.ui.preferences import PreferencesDialog
from viewer.ui.progress import ProgressPanel
from viewer.ui.receiver_controller import ReceiverController
from viewer.ui.send_controller import SendController
from viewer.ui.series_info import series_display_from_stack
from viewer.ui.settings import ViewerSettings, WindowPreset
from viewer.ui.workers import Handlers, JobHost, WorkerPool, WorkerThread

log = logging.getLogger(__name__)

LAYOUT_VERSION = 1


def _first_stack(index: StudyIndex) -> Stack | None:
    """The stack a reader looks at first: the first series' largest volume, localizers last."""
    candidates = []
    for patient in index.patients:
        for study in patient.studies:
            for series in study.series:
                for stack in series.stacks:
                    candidates.append(stack)
    if not candidates:
        return None
    volumes = [s for s in candidates if s.n_slices > 1 and not s.first.is_localizer]
    return volumes[0] if volumes else candidates[0]


class MainWindow(QMainWindow):
    """Signals: ``index_ready(index)``, ``series_opened(stack_uid)``, ``volume_loaded(stack_uid)``,
    ``load_failed(stack_uid, message)``, ``closing()``."""

    index_ready = Signal(object)
    series_opened = Signal(str)
    volume_loaded = Signal(str)
    load_failed = Signal(str, str)
    closing = Signal()

    def __init__(self, settings: ViewerSettings | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("GRU Viewer")
        self.setObjectName("MainWindow")
        self.setAcceptDrops(True)
        self.settings = settings if settings is not None else ViewerSettings()
        cache_mb = self.settings.cache_mb
        self.cache = VolumeCache(cache_mb * 2**20 if cache_mb else None)
        self.pool = WorkerPool(self)
        self.import_log = ImportLog()
        self._log_dialog: ImportLogDialog | None = None

        self.index: StudyIndex | None = None
        self._stacks: dict[str, Stack] = {}
        self._generation = 0
        self._current_tag: JobTag | None = None
        self._load_thread: WorkerThread | None = None
        self._index_thread: WorkerThread | None = None
        self._thumb_thread: WorkerThread | None = None
        self._index_generation = 0
        self._opened_paths: list[str] = []
        self.auto_open_first = True  # open the first series once a folder is indexed

        self.view = ImageView()
        self.layouts = LayoutController(self.view, self.current_volume, self)
        self.setCentralWidget(self.layouts.widget)
        self.browser = StudyBrowser()
        self.browser_dock = self.add_dock(
            self.browser, "Studies", Qt.DockWidgetArea.LeftDockWidgetArea, min_width=280, width=330
        )
        self.browser.stack_activated.connect(self.open_stack)

        self.value_label = QLabel("")
        self.value_label.setMinimumWidth(110)
        self.position_label = QLabel("")
        self.progress = ProgressPanel()
        status = self.statusBar()
        # Permanent widgets: a temporary status message must never hide the value under the cursor.
        self.position_label.setMinimumWidth(330)
        status.addPermanentWidget(self.progress)
        status.addPermanentWidget(self.value_label)
        status.addPermanentWidget(self.position_label)
        self.view.cursor_moved.connect(self._on_cursor)
        self.layouts.mpr.cursor_moved.connect(self._on_cursor)
        self.series_opened.connect(self.layouts.on_series_changed)
        self.volume_loaded.connect(self.layouts.on_series_changed)
        self.view.cine_fps_changed.connect(self._on_fps_changed)
        self.view.set_cine_fps(self.settings.cine_fps)

        self._build_menus()
        # Before the layout is restored, so the Analysis dock and toolbar get their saved places back.
        jobs = JobHost(self.pool, self.progress, status)
        self.analysis = AnalysisController(
            self.view, series=self, jobs=jobs, settings=self.settings, add_dock=self.add_dock, parent=self
        )
        self._place_analysis(self.analysis)
        self.export = ExportController(
            self.view,
            self.analysis.overlay,
            shown_session=lambda: self.analysis.shown_session,
            series=self,
            jobs=jobs,
            settings=self.settings,
            parent=self,
        )
        self.send = SendController(
            self.analysis.overlay,
            shown_session=lambda: self.analysis.shown_session,
            series=self,
            jobs=jobs,
            settings=self.settings,
            parent=self,
        )
        self._place_export(self.export, self.analysis)
        self._place_export(self.send, self.analysis)
        self.layouts.attach_evidence(self.analysis.overlay, lambda: self.analysis.shown_result)
        self._place_layouts(self.layouts)
        self.receiver = ReceiverController(self, self.settings, parent=self)
        self.receiver.apply()
        self.layouts.mpr.set_linked(self.settings.mpr_linked)
        self.measurements = MeasurementController(self.layouts, self.current_volume, self)
        self.measurements.attach(self)
        self.export.annotations = self.measurements.view_annotations
        self.send.annotations = self.measurements.view_annotations
        self._restore_layout()

    # -- building ---------------------------------------------------------------------------------------------

    def add_dock(
        self,
        widget: QWidget,
        title: str,
        area: Qt.DockWidgetArea,
        *,
        min_width: int = 0,
        width: int | None = None,
    ) -> QDockWidget:
        """Add a dock (the browser, the analysis results) that View ▸ can show and hide, ``width`` pixels wide
        at first and never narrower than ``min_width``."""
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title.lower().replace(' ', '-')}")
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.addDockWidget(area, dock)
        if hasattr(self, "view_menu"):
            self.view_menu.insertAction(self._docks_anchor, dock.toggleViewAction())
        if min_width:
            dock.setMinimumWidth(min_width)
        if width is not None:
            self.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
        return dock

    def _place_analysis(self, analysis: AnalysisController) -> None:
        """Put Analyze first in Tools, the overlay switch in View, the help first in Help, and all three with the
        Analysis dock's switch on a toolbar; the analysis follows the series on screen."""
        tools = self.tools_menu
        first = tools.actions()[0] if tools.actions() else None
        tools.insertAction(first, analysis.analyze_action)
        if first is not None:
            tools.insertSeparator(first)
        self.view_menu.addSeparator()
        self.view_menu.addAction(analysis.overlay_action)
        help_menu = self.help_menu
        help_menu.insertAction(help_menu.actions()[0] if help_menu.actions() else None, analysis.help_action)

        toolbar = QToolBar("Analysis", self)
        toolbar.setObjectName("toolbar-analysis")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        toolbar.addAction(analysis.analyze_action)
        toolbar.addAction(analysis.overlay_action)
        toolbar.addAction(analysis.dock.toggleViewAction())
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, toolbar)
        self.analysis_toolbar = toolbar

        self.series_opened.connect(analysis.on_series_opened)
        self.volume_loaded.connect(analysis.on_volume_loaded)

    def _place_layouts(self, layouts: LayoutController) -> None:
        """The layout switches in View and on their own toolbar."""
        self.view_menu.addSeparator()
        toolbar = QToolBar("Layout", self)
        toolbar.setObjectName("toolbar-layout")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for action in layouts.actions:
            self.view_menu.addAction(action)
            toolbar.addAction(action)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, toolbar)
        self.layout_toolbar = toolbar

    def _place_export(self, export: ExportController | SendController, analysis: AnalysisController) -> None:
        """Put Export Report… (then Send Results to PACS…, also under Analyze in Tools) above Quit in File, and
        re-check whether it is available whenever the series on screen or its analysis changes."""
        menu = self.file_menu
        menu.insertAction(self.file_quit_separator, export.action)
        if isinstance(export, ExportController):
            menu.insertSeparator(export.action)
        else:  # Send Results to PACS… also sits under Analyze in Tools, where the analysis it sends is made
            tools = self.tools_menu.actions()
            after = tools.index(analysis.analyze_action) + 1
            self.tools_menu.insertAction(tools[after] if after < len(tools) else None, export.action)
        menu.aboutToShow.connect(export.update_enabled)
        for signal in (
            self.series_opened,
            self.volume_loaded,
            analysis.result_shown,
            analysis.started,
            analysis.failed,
            analysis.cancelled,
        ):
            signal.connect(export.update_enabled)

    def _action(
        self,
        menu: QMenu,
        text: str,
        slot: Callable[..., object],
        shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
        tip: str = "",
    ) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.file_menu = file_menu
        self._action(file_menu, "Open &Folder…", self.open_folder_dialog, QKeySequence.StandardKey.Open)
        self._action(file_menu, "Open DICOMDIR or &Files…", self.open_files_dialog, "Ctrl+Shift+O")
        self._action(
            file_menu, "Query &PACS…", self.open_pacs_dialog, "Ctrl+Shift+P", "Search a PACS and retrieve"
        )
        self.recent_menu = file_menu.addMenu("&Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        self.file_quit_separator = file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        view_menu = bar.addMenu("&View")
        self.view_menu = view_menu
        view_menu.addAction(self.browser_dock.toggleViewAction())
        self._docks_anchor = view_menu.addSeparator()
        self._action(view_menu, "Import &Log…", self.show_import_log, "Ctrl+L")
        view_menu.addSeparator()
        self.preset_actions: list[QAction] = []
        for i in range(6):
            action = self._action(view_menu, "", lambda _=False, n=i: self.apply_preset(n), str(i + 1))
            self.preset_actions.append(action)
        self._update_preset_labels()
        self._action(view_menu, "Default Window (DICOM)", self.view.reset_window, "0")
        self._action(view_menu, "&Invert", self.layouts.toggle_invert, "I")
        self._action(view_menu, "&Reset View", self.layouts.reset_view, "R")
        self._action(view_menu, "Fit to Window", self.layouts.fit, "F")
        self._action(view_menu, "Cine Play/Stop", self.view.toggle_cine, "Space")
        view_menu.addSeparator()
        self._action(view_menu, "&Full Screen", self.toggle_full_screen, "F11")

        self.tools_menu = bar.addMenu("&Tools")
        self._action(
            self.tools_menu, "&Preferences…", self.show_preferences, QKeySequence.StandardKey.Preferences
        )
        self._action(self.tools_menu, "Cancel Running Job", self.progress.cancel_current, "Esc")
        self._action(self.tools_menu, "Clear Series Cache", self.clear_cache)
        self.forget_index_action = self._action(
            self.tools_menu,
            "Forget Indexed Studies…",
            self.forget_index,
            tip="Delete the header index of the folders opened before (it holds their patient names and IDs)",
        )

        help_menu = bar.addMenu("&Help")
        self.help_menu = help_menu
        self.model_card_action = self._action(
            help_menu,
            "&Model Card",
            lambda _=False: show_model_card(self, self.analysis.model_path),
            tip="The whole card of the model Analyze uses: training data, what it misses by kind, robustness",
        )
        self._action(help_menu, "&About GRU Viewer", lambda _=False: show_about(self))
        self._action(help_menu, "Keyboard && Mouse", self._show_help_message)

    def _update_preset_labels(self) -> None:
        for action, preset in zip(self.preset_actions, self.settings.presets(), strict=False):
            action.setText(f"{preset.name}  (W {preset.width:g} / L {preset.center:g})")

    # -- opening ----------------------------------------------------------------------------------------------

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open DICOM folder", self.settings.last_folder or "")
        if folder:
            self.open_paths([folder])

    def open_files_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self,
            "Open DICOMDIR or DICOM files",
            self.settings.last_folder or "",
            "DICOM (DICOMDIR *.dcm *.DCM *.ima *.IMA *.dicom);;All files (*)",
        )
        if files:
            self.open_paths(files)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        items = self.settings.recent()
        for path in items:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.open_paths([p]))
        if not items:
            self.recent_menu.addAction("(none)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear Recent", self.settings.clear_recent)

    @property
    def opened_folders(self) -> tuple[Path, ...]:
        """The folders opened as studies (a file's parent folder): exports never go inside them."""
        from viewer.report.output import opened_folders

        return opened_folders(self._opened_paths)

    def open_pacs_dialog(self) -> None:
        """File ▸ Query PACS…: search and retrieve; a retrieved study opens here."""
        from viewer.ui.live_folder import LiveFolder
        from viewer.ui.pacs_dialog import PacsQueryDialog

        dialog = PacsQueryDialog(self.pool, parent=self)
        live = LiveFolder(self, parent=dialog)  # the first slices show while the rest still arrive
        dialog.arriving.connect(live.refresh)
        dialog.retrieved.connect(live.refresh)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.pacs_dialog = dialog

    def open_paths(self, paths: Sequence[str]) -> None:
        """Index a folder, DICOMDIR or files on a worker, then list them and open the first series."""
        paths = [str(p) for p in paths if str(p)]
        if not paths or not self.pool.accepting:
            return
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            report_exception(ViewerError("Cannot open", "no such file or folder", missing[0]))
            paths = [p for p in paths if p not in missing]
            if not paths:
                return
        self._cancel_thread(self._index_thread)
        self._cancel_thread(self._thumb_thread)
        self._index_generation += 1
        self._opened_paths = paths
        first = Path(paths[0])
        self.settings.last_folder = str(first if first.is_dir() else first.parent)
        label = first.name or str(first)
        if len(paths) > 1:
            label += f" and {len(paths) - 1} more"
        thread = self.pool.run(
            index_paths,
            paths,
            tag=("index", self._index_generation),
            name="index",
            handlers=Handlers(
                progress=self._on_index_progress,
                finished=self._on_index_ready,
                errored=self._on_index_failed,
                stopped=self._on_index_stopped,
            ),
        )
        self._index_thread = thread
        self.progress.begin("index", f"Indexing {label}", thread.cancel)
        self.statusBar().showMessage(f"Indexing {label}…")

    def _is_current_index(self, tag: tuple[str, int]) -> bool:
        return tag == ("index", self._index_generation)

    def _on_index_progress(self, tag: tuple[str, int], done: int, total: int, text: str) -> None:
        if self._is_current_index(tag):
            self.progress.update_job(
                "index", done, total, f"Indexing: {done}/{total} files" if total else text
            )

    def _on_index_stopped(self, tag: tuple[str, int]) -> None:
        if self._is_current_index(tag):
            self.progress.end("index")
            self._index_thread = None

    def _on_index_failed(self, tag: tuple[str, int], exc: BaseException) -> None:
        if not self._is_current_index(tag):
            return
        self.statusBar().showMessage("Indexing failed", 5000)
        report_exception(exc)

    def _on_index_ready(self, tag: tuple[str, int], index: StudyIndex) -> None:
        if not self._is_current_index(tag):
            return
        self.index = index
        self._stacks = {s.uid: s for s in index.stacks()}
        self.import_log.clear()
        for entry in index.skipped:
            self.import_log.add("import", entry.path, entry.reason)
        for stack in self._stacks.values():
            for w in getattr(stack, "warnings", []):
                self.import_log.add(
                    "geometry", stack.label + " · " + stack.uid, getattr(w, "message", str(w))
                )
        self._refresh_log_dialog()
        self.browser.set_index(index)
        for p in self._opened_paths:
            self.settings.add_recent(p)
        n_series = sum(len(st.series) for pt in index.patients for st in pt.studies)
        skipped = len(index.skipped)
        n_stacks = len(self._stacks)
        message = f"{n_series} series" + (f" ({n_stacks} stacks)" if n_stacks != n_series else "")
        if skipped:
            message += f"; {skipped} file(s) skipped (View ▸ Import Log)"
        self.statusBar().showMessage(message, 10000)
        # Qt appends the application's display name on every desktop: "demo — GRU Viewer".
        self.setWindowTitle(Path(self._opened_paths[0]).name)
        self.index_ready.emit(index)
        first = _first_stack(index)
        if first is None:
            self.view.clear()
            why = (
                f"{skipped} file(s) were skipped: see View ▸ Import Log."
                if skipped
                else "The folder is empty."
            )
            self.view.show_message(f"No DICOM images found. {why}", error=True)
        elif self.auto_open_first:
            self.open_stack(first.uid)
        self._start_thumbnails()

    def _start_thumbnails(self) -> None:
        stacks = list(self._stacks.values())
        if not stacks:
            return
        self._thumb_thread = self.pool.run(
            make_thumbnails,
            stacks,
            tag=("thumbs", self._index_generation),
            name="thumbnails",
            handlers=Handlers(yielded=self._on_thumbnail, stopped=self._on_thumbnails_stopped),
        )

    def _on_thumbnail(self, tag: tuple[str, int], item: tuple[str, np.ndarray]) -> None:
        if tag == ("thumbs", self._index_generation):
            uid, image = item
            self.browser.set_thumbnail(uid, image)

    def _on_thumbnails_stopped(self, tag: tuple[str, int]) -> None:
        if tag == ("thumbs", self._index_generation):
            self._thumb_thread = None

    # -- series -----------------------------------------------------------------------------------------------

    def stack(self, uid: str) -> Stack | None:
        """The indexed stack ``uid``, if any."""
        return self._stacks.get(uid)

    @property
    def current_uid(self) -> str | None:
        return self._current_tag.stack_uid if self._current_tag is not None else None

    @property
    def loading(self) -> bool:
        return self._load_thread is not None

    def current_volume(self) -> Volume | None:
        """The volume on screen once it is completely loaded (what the Analyze step will take)."""
        uid = self.current_uid
        return self.cache.get(uid) if uid is not None and not self.loading else None

    def open_stack(self, uid: str) -> None:
        """Show a stack: at once from the cache, else load it on a worker (slices appear as they decode)."""
        stack = self._stacks.get(uid)
        if stack is None or not self.pool.accepting:
            return
        if self._current_tag is not None and self._current_tag.stack_uid == uid and self.loading:
            return
        self.cancel_load()
        self._generation += 1
        tag = JobTag(uid, self._generation)
        self._current_tag = tag
        self.browser.select_stack(uid)
        display = series_display_from_stack(stack)
        cached = self.cache.get(uid)
        if cached is not None:
            self.view.set_series(display, cached)
            self.series_opened.emit(uid)
            self.volume_loaded.emit(uid)
            self.view.canvas.setFocus()
            return
        self.view.set_series(display)
        self._load_thread = self.pool.run(
            load_tagged,
            stack,
            tag,
            tag=tag,
            yield_to="emit",
            name="load",
            handlers=Handlers(
                progress=self._on_load_progress,
                yielded=self._on_slice_ready,
                finished=self._on_load_finished,
                errored=self._on_load_failed,
                cancelled=self._on_load_cancelled,
                stopped=self._on_load_stopped,
            ),
        )
        self.progress.begin("load", f"Loading {display.series_title}", self.cancel_load)
        self.series_opened.emit(uid)
        self.view.canvas.setFocus()

    def cancel_load(self) -> None:
        """Stop the running load (its late signals are ignored by their generation)."""
        thread = self._load_thread
        if thread is not None:
            thread.cancel()
            self._load_thread = None
            self.progress.end("load")
            if self._current_tag is not None and thread.tag == self._current_tag:
                self.view.mark_load_cancelled()

    def _cancel_thread(self, thread: WorkerThread | None) -> None:
        if thread is not None:
            thread.cancel()

    def _is_current(self, tag: JobTag) -> bool:
        return tag == self._current_tag

    def _on_slice_ready(self, tag: JobTag, item: SliceReady) -> None:
        if self._is_current(tag) and self._load_thread is not None:
            self.view.set_slice_data(item.k, item.array)

    def _on_load_progress(self, tag: JobTag, done: int, total: int, text: str) -> None:
        if self._is_current(tag) and self._load_thread is not None:
            self.progress.update_job("load", done, total, text)

    def _on_load_finished(self, tag: JobTag, volume: Volume) -> None:
        self.cache.put(tag.stack_uid, volume)
        if not self._is_current(tag):
            return
        self._load_thread = None
        self.progress.end("load")
        for path, why in getattr(volume, "skipped", []) or []:
            self.import_log.add("load", path, why)
        self._refresh_log_dialog()
        self.view.set_volume(volume)
        self.volume_loaded.emit(tag.stack_uid)

    def _on_load_failed(self, tag: JobTag, exc: BaseException) -> None:
        if not self._is_current(tag):
            return
        self._load_thread = None
        self.progress.end("load")
        message = (
            str(exc)
            if isinstance(exc, ViewerError)
            else f"This series cannot be displayed ({type(exc).__name__})."
        )
        stack = self._stacks.get(tag.stack_uid)
        self.import_log.add(
            "load", stack.files[0] if stack is not None and stack.files else tag.stack_uid, message
        )
        self._refresh_log_dialog()
        self.view.show_message(message, error=True)
        if not isinstance(exc, ViewerError):
            report_exception(exc)
        self.load_failed.emit(tag.stack_uid, message)

    def _on_load_cancelled(self, tag: JobTag) -> None:
        if self._is_current(tag):
            self._load_thread = None
            self.progress.end("load")
            self.view.mark_load_cancelled()

    def _on_load_stopped(self, tag: JobTag) -> None:
        if self._load_thread is not None and self._load_thread.tag == tag:
            self._load_thread = None
            self.progress.end("load")

    # -- view commands ----------------------------------------------------------------------------------------

    def apply_preset(self, n: int) -> None:
        presets = self.settings.presets()
        if 0 <= n < len(presets):
            preset: WindowPreset = presets[n]
            self.view.apply_preset(preset)
            self.statusBar().showMessage(
                f"{preset.name} window: L {preset.center:g} / W {preset.width:g}", 3000
            )

    def toggle_full_screen(self) -> None:
        if self.isFullScreen():
            self.showNormal()
        else:
            self.showFullScreen()

    def show_import_log(self) -> ImportLogDialog:
        if self._log_dialog is None:
            self._log_dialog = ImportLogDialog(self.import_log, self)
        self._log_dialog.refresh()
        self._log_dialog.show()
        self._log_dialog.raise_()
        return self._log_dialog

    def _refresh_log_dialog(self) -> None:
        if self._log_dialog is not None:
            self._log_dialog.refresh()

    def show_preferences(self) -> PreferencesDialog:
        dialog = PreferencesDialog(self.settings, self)
        dialog.accepted.connect(self._apply_preferences)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def _apply_preferences(self) -> None:
        self._update_preset_labels()
        self.view.set_cine_fps(self.settings.cine_fps)
        if self.settings.cache_mb:
            self.cache.set_limit(self.settings.cache_mb * 2**20)
        self.analysis.set_scaling(self.settings.saliency_scaling)
        self.receiver.apply(interactive=True)
        self.layouts.mpr.set_linked(self.settings.mpr_linked)

    def clear_cache(self) -> None:
        self.cache.clear()
        self.statusBar().showMessage("Series cache cleared", 3000)

    def forget_index(self, _checked: bool = False, *, confirm: bool = True) -> bool:
        """Delete the persistent header index (after asking); True when it is gone.

        The index keeps the headers of every folder opened, patient names and IDs included, for
        :data:`~viewer.dicom.cache.RETENTION_DAYS`; this removes them at once. The images are not touched, and
        the series on screen stay open.
        """
        from viewer.dicom.cache import forget_index

        if confirm:
            answer = QMessageBox.question(
                self,
                "Forget indexed studies",
                "Delete the header index of every folder opened before? It holds those studies' patient names "
                "and IDs. Folders then open a little more slowly the first time; the images are not touched.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                QMessageBox.StandardButton.Cancel,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return False
        try:
            forget_index()
        except ViewerError as err:
            report_exception(err)
            return False
        self.statusBar().showMessage("Header index deleted", 5000)
        return True

    def _show_help_message(self) -> None:
        self.statusBar().showMessage(
            "Wheel/↑↓: slice · PgUp/PgDn: 10% · Home/End · left-drag: W/L · right-drag: zoom · middle-drag: pan · "
            "double-click: fit · Ctrl+1/2/3: 1×1/2×2/1×3 layout · 1–6 presets · 0 default · I invert · R reset · Space cine · F11 full screen",
            15000,
        )

    def _on_cursor(self, info: CursorInfo | None) -> None:
        if info is None:
            self.value_label.setText("")
            self.position_label.setText("")
            return
        self.value_label.setText(info.text())
        self.position_label.setText(info.position_text())

    def _on_fps_changed(self, fps: float) -> None:
        self.settings.cine_fps = fps

    # -- drag and drop ----------------------------------------------------------------------------------------

    def dragEnterEvent(self, ev: QDragEnterEvent) -> None:  # noqa: N802 (Qt override)
        if ev.mimeData().hasUrls() and any(u.isLocalFile() for u in ev.mimeData().urls()):
            ev.acceptProposedAction()
        else:
            ev.ignore()

    def dropEvent(self, ev: QDropEvent) -> None:  # noqa: N802 (Qt override)
        paths = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        if paths:
            ev.acceptProposedAction()
            QTimer.singleShot(0, lambda: self.open_paths(paths))

    # -- layout and closing -----------------------------------------------------------------------------------

    def _restore_layout(self) -> None:
        geometry = self.settings.window_geometry()
        #: True on the first run (no saved geometry): the window opens maximised, later as it was left.
        self.opens_maximised = geometry is None
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            screen = QGuiApplication.primaryScreen()
            if screen is not None:  # the whole screen even where no window manager maximises (Xvfb, kiosks)
                self.setGeometry(screen.availableGeometry())
        state = self.settings.window_state()
        if state is not None:
            self.restoreState(state, LAYOUT_VERSION)

    def save_layout(self) -> None:
        self.settings.set_window_layout(
            QByteArray(self.saveGeometry()), QByteArray(self.saveState(LAYOUT_VERSION))
        )
        self.settings.sync()

    def shutdown(self) -> None:
        """Stop cine and every worker (request interruption, quit, wait)."""
        self.view.stop_cine()
        self.receiver.stop()
        self.cancel_load()
        self.pool.cancel_all()
        self.pool.shutdown()

    def closeEvent(self, ev: QCloseEvent) -> None:  # noqa: N802 (Qt override)
        self.save_layout()
        self.shutdown()
        if self._log_dialog is not None:
            self._log_dialog.close()
        super().closeEvent(ev)
        self.closing.emit()
