"""Receiving (opt-in): a C-STORE SCP that takes pushes from the configured peers into the private store.

Off unless started (``gru-viewer pacs listen``, or the GUI's Preferences ▸ PACS setting). It binds one
interface and port, answers only to its own AE title (a wrong called AE title is rejected with reason 7) and
only to the calling AE titles listed (others are rejected with A-ASSOCIATE-RJ, rejected-permanent, reason 3:
calling AE title not recognised). Each instance is written by :meth:`LocalStore.write` (hashed names, no UID or
name in a path, ``.partial`` until complete) from pynetdicom's thread; one indexing thread puts the new files into
the header index, the first at once and then at most every ``interval_s``, and hands each indexed batch to
``on_indexed`` (from that thread: a GUI marshals it to its own thread).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from viewer.dicom.cache import HeaderCache
from viewer.errors import ViewerError
from viewer.pacs.dimse import MAX_PDU, RETRIEVE_TIMEOUT_S, nodelay_on_accept
from viewer.pacs.failures import Failure, PacsError
from viewer.pacs.nodes import DEFAULT_LISTEN_BIND, DEFAULT_LISTEN_PORT, ListenerConfig
from viewer.pacs.store import LocalStore

DEFAULT_PORT, DEFAULT_BIND = (
    DEFAULT_LISTEN_PORT,
    DEFAULT_LISTEN_BIND,
)  # the C-MOVE SCP of a retrieve uses 11113
INDEX_INTERVAL_S = 1.0

log = logging.getLogger(__name__)

IndexedFn = Callable[[list[Path]], None]
RejectedFn = Callable[[str, str], None]


class StorageListener:
    """The C-STORE SCP. :meth:`start` binds (or raises :class:`PacsError`), :meth:`stop` closes the port and
    indexes what is still pending. ``received`` counts instances stored, ``refused`` those not stored,
    ``rejected`` associations turned away."""

    def __init__(
        self,
        config: ListenerConfig,
        store: LocalStore | None = None,
        *,
        on_indexed: IndexedFn | None = None,
        on_rejected: RejectedFn | None = None,
        interval_s: float | None = None,
    ) -> None:
        self.config = config.validated()
        self.store = store if store is not None else LocalStore()
        self.on_indexed = on_indexed
        self.on_rejected = on_rejected
        self.interval_s = interval_s if interval_s is not None else INDEX_INTERVAL_S
        self.received = 0
        self.refused = 0
        self.rejected = 0
        self._lock = threading.Lock()
        self._arrived: queue.Queue[Path] = queue.Queue()
        self._stop = threading.Event()
        self._server = None
        self._indexer: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def address(self) -> tuple[str, int]:
        """The address bound (the port the kernel chose when configured as 0)."""
        if self._server is None:
            return self.config.bind, self.config.port
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Listen (non-blocking: pynetdicom serves on its own threads).

        Raises
        ------
        PacsError
            The address cannot be bound (in use, not an address of this host, a privileged port).
        """
        if self._server is not None:
            return
        ae = AE(ae_title=self.config.ae_title)
        ae.maximum_pdu_size = MAX_PDU
        ae.network_timeout = RETRIEVE_TIMEOUT_S
        ae.require_called_aet = True
        ae.require_calling_aet = list(self.config.allowed)
        ae.add_supported_context(Verification)
        for cx in AllStoragePresentationContexts:  # store whatever syntax the peer sends: no transcoding here
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        handlers = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_CONN_OPEN, nodelay_on_accept),
            (evt.EVT_REJECTED, self._on_rejected),
        ]
        try:
            self._server = ae.start_server(
                (self.config.bind, self.config.port), block=False, evt_handlers=handlers
            )
        except OSError as exc:
            raise PacsError(
                Failure.CONFIG,
                "Cannot start the DICOM receiver",
                f"it cannot listen on {self.config.bind}:{self.config.port} ({exc.strerror or exc})",
            ) from None
        self._stop.clear()
        self._indexer = threading.Thread(target=self._index_loop, name="pacs-receiver-index", daemon=True)
        self._indexer.start()
        log.info("DICOM receiver %s listening", self.config.describe())

    def stop(self) -> None:
        """Close the port (associations in progress end), index what arrived, and return."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
        self._stop.set()
        if self._indexer is not None:
            self._indexer.join()
            self._indexer = None

    def __enter__(self) -> StorageListener:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- pynetdicom's threads --------------------------------------------------------------------------------

    def _on_store(self, event: evt.Event) -> int:
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            path = self.store.write(ds)
        except ViewerError as exc:
            log.warning("received instance not stored: %s", exc.why)
            self._count("refused")
            return 0xA700  # Refused: out of resources
        except Exception as exc:  # a dataset pydicom cannot decode
            log.warning("received instance not decodable: %s", type(exc).__name__)
            self._count("refused")
            return 0xC210  # Cannot understand
        self._count("received")
        self._arrived.put(path)
        return 0x0000

    def _on_rejected(self, event: evt.Event) -> None:
        calling = str(event.assoc.requestor.ae_title)
        address = str(event.assoc.requestor.address)
        self._count("rejected")
        log.info("DICOM receiver rejected an association from %r at %s", calling, address)
        if self.on_rejected is not None:
            self.on_rejected(calling, address)

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    # -- the indexing thread ---------------------------------------------------------------------------------

    def _drain(self, into: list[Path]) -> None:
        while True:
            try:
                into.append(self._arrived.get_nowait())
            except queue.Empty:
                return

    def _index_loop(self) -> None:
        """Index arrivals: the first of a quiet spell at once, then batches at most every ``interval_s``."""
        last = 0.0
        with HeaderCache() as cache:
            if cache.error:
                log.info("received files not indexed: %s", cache.error)
            while True:
                pending: list[Path] = []
                try:
                    pending.append(self._arrived.get(timeout=0.1))
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    continue
                wait = last + self.interval_s - time.monotonic()
                if wait > 0:
                    self._stop.wait(wait)
                self._drain(pending)
                self.store.index(pending, cache)
                last = time.monotonic()
                if self.on_indexed is not None:
                    try:
                        self.on_indexed(pending)
                    except Exception:  # a listener's callback must not end the indexing
                        log.exception("on_indexed failed")
