"""Qt widgets, windows and workers: the only package that imports Qt and pyqtgraph."""

from viewer.ui.compat import guard_signal_refcount_leak

guard_signal_refcount_leak()
