"""The shape of long work: a plain function reports progress and checks for cancellation through these.

Every layer's long-running function (indexing, loading, analysis, training, export) takes a
``progress(done, total, text)`` callback and a ``cancelled()`` check and knows nothing of threads; the GUI's
workers and the CLI supply both.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[int, int, str], None]
CancelFn = Callable[[], bool]
