"""The status-bar progress panel: a label, a bar and a Cancel button for the job in the foreground.

Jobs are keyed (``"index"``, ``"load"``, later ``"analyze"``); the most recently begun job that is still
running is the one shown, and Cancel calls that job's cancel function.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QToolButton, QWidget


class ProgressPanel(QWidget):
    """The status bar's progress: the newest running job's text, bar and Cancel button."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.label.setMinimumWidth(120)
        self.label.setMaximumWidth(320)
        self.bar = QProgressBar()
        self.bar.setFixedWidth(180)
        self.bar.setTextVisible(True)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Stop this job (Esc)")
        self.cancel_button.clicked.connect(self.cancel_current)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel_button)
        self._jobs: dict[str, tuple[str, Callable[[], None] | None, int, int]] = {}
        self._order: list[str] = []
        self.hide()

    @property
    def current(self) -> str | None:
        """Key of the job shown (the newest one still running), or None."""
        return self._order[-1] if self._order else None

    def begin(self, key: str, text: str, on_cancel: Callable[[], None] | None) -> None:
        """Show a new job; ``on_cancel`` runs when the user cancels it."""
        self._jobs[key] = (text, on_cancel, 0, 0)
        if key in self._order:
            self._order.remove(key)
        self._order.append(key)
        self._show()

    def update_job(self, key: str, done: int, total: int, text: str = "") -> None:
        """Record a job's progress (and new text); shown when it is the current job."""
        if key not in self._jobs:
            return
        old_text, cancel, _, _ = self._jobs[key]
        self._jobs[key] = (text or old_text, cancel, done, total)
        if key == self.current:
            self._show()

    def end(self, key: str) -> None:
        """Forget a job; the previous one still running is shown again."""
        self._jobs.pop(key, None)
        if key in self._order:
            self._order.remove(key)
        self._show()

    def cancel_current(self) -> None:
        """Cancel the job shown, if it can be cancelled."""
        key = self.current
        if key is None:
            return
        _, cancel, _, _ = self._jobs[key]
        if cancel is not None:
            cancel()

    def _show(self) -> None:
        key = self.current
        if key is None:
            self.hide()
            return
        text, cancel, done, total = self._jobs[key]
        self.label.setText(text)
        self.label.setToolTip(text)
        if total > 0:
            self.bar.setRange(0, total)
            self.bar.setValue(min(done, total))
        else:
            self.bar.setRange(0, 0)  # busy indicator until the first step is known
        self.cancel_button.setEnabled(cancel is not None)
        self.show()
