"""DIMSE with pynetdicom: C-ECHO, C-FIND (STUDY / SERIES), C-GET and C-MOVE into the local store.

Every failure to get an association is told apart (see :func:`_why_not_established`): a name that does not
resolve, a refused or unroutable connection, no answer in time, an A-ASSOCIATE-RJ with its reason, an abort.
pynetdicom only logs why a TCP connect failed, so our sockets record it (:class:`_RecordingSocket`); they also
set TCP_NODELAY: pynetdicom leaves Nagle's algorithm on, which costs about 40 ms per DIMSE message on loopback.
"""

from __future__ import annotations

import errno
import logging
import queue
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, AllStoragePresentationContexts, build_role, evt
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.status import (
    QR_FIND_SERVICE_CLASS_STATUS,
    QR_GET_SERVICE_CLASS_STATUS,
    QR_MOVE_SERVICE_CLASS_STATUS,
)
from pynetdicom.transport import AssociationSocket

from viewer.errors import ViewerError
from viewer.pacs.failures import Failure, PacsError
from viewer.pacs.nodes import Node, validate_ae_title
from viewer.pacs.query import (
    SERIES_KEYS,
    STUDY_KEYS,
    QueryResult,
    StudyQuery,
    series_row,
    study_row,
)
from viewer.pacs.retrieve import RetrieveProgress, RetrieveProgressFn, RetrieveResult
from viewer.pacs.store import LocalStore
from viewer.progress import CancelFn

TIMEOUT_S = 5.0
#: The longest wait for one response of a retrieve (a sub-operation may move a large instance).
RETRIEVE_TIMEOUT_S = 60.0
MAX_PDU = 131072
#: Presentation contexts an SCU may propose (PS3.8: context IDs are odd numbers 1-255).
MAX_CONTEXTS = 128
_UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
_PENDING = (0xFF00, 0xFF01)
_CANCEL = 0xFE00

log = logging.getLogger(__name__)

# -- sockets: TCP_NODELAY, and why a connect failed ----------------------------------------------------------

_connect_errors: weakref.WeakKeyDictionary[Association, OSError] = weakref.WeakKeyDictionary()


class _RecordingSocket(socket.socket):
    """A client socket that remembers, for its association, the error of a failed connect, and is closed
    whatever way pynetdicom ends it."""

    def connect(self, address: Any) -> None:
        try:
            super().connect(address)
        except OSError as exc:
            owner = getattr(self, "owner", None)
            assoc = owner() if owner is not None else None
            if assoc is not None:
                _connect_errors[assoc] = exc
            self.close()  # pynetdicom's clean-up shuts down first, which fails on an unconnected socket
            raise

    def shutdown(self, how: int) -> None:
        try:
            super().shutdown(how)
        except OSError:
            self.close()  # pynetdicom skips close() when shutdown() fails (a peer already gone): do it here
            raise


def _create_socket(self: AssociationSocket, address: Any) -> socket.socket:
    """pynetdicom's own ``_create_socket`` (3.0), with TCP_NODELAY and a :class:`_RecordingSocket`."""
    family = socket.AF_INET if address.is_ipv4 else socket.AF_INET6
    sock = _RecordingSocket(family, socket.SOCK_STREAM)
    sock.owner = weakref.ref(self.assoc)  # type: ignore[attr-defined]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if self.assoc.network_timeout is not None:
        sock.settimeout(self.assoc.network_timeout)
    sock.bind(address.as_tuple)
    self._is_connected = False
    return sock


AssociationSocket._create_socket = _create_socket  # type: ignore[method-assign]

_serve_request = Association._serve_request


def _serve_or_hand_back(self: Association, msg: Any, context_id: int) -> None:
    """pynetdicom's ``_serve_request``, except that a *response* taken off the queue while a ``send_*()`` of
    this association is under way goes back to the head of the queue, where that call waits for it.

    pynetdicom 3.0's reactor and its ``send_*()`` methods pause each other with a flag and an event that
    leave a window: the reactor can pass its pause point just as a send starts, take the send's response
    and drop it as an "unexpected … service message"; the send then times out. Fast answers (TCP_NODELAY)
    and a busy machine make it likely (seen in about one test run in five on 2 loaded cores).
    """
    sending = not self._reactor_checkpoint.is_set()
    if sending and msg is not None and not msg.is_valid_request and self.is_requestor:
        q = self.dimse.msg_queue
        with q.mutex:
            q.queue.appendleft((context_id, msg))
            q.unfinished_tasks += 1
            q.not_empty.notify()
        return
    _serve_request(self, msg, context_id)


Association._serve_request = _serve_or_hand_back  # type: ignore[method-assign]


def nodelay_on_accept(event: evt.Event) -> None:
    """Our storage SCP (C-MOVE destination): TCP_NODELAY on each accepted connection too."""
    sock = getattr(event.assoc.dul.socket, "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


# -- associations --------------------------------------------------------------------------------------------


def _where(node: Node) -> str:
    return f"{node.ae_title} at {node.host}:{node.port}"


def _resolve(node: Node) -> str:
    if not node.has_dimse:
        raise PacsError(
            Failure.CONFIG, f"PACS node {node.name!r} has no DIMSE address", "give an AE title and host"
        )
    try:
        infos = socket.getaddrinfo(node.host, node.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise PacsError(
            Failure.UNRESOLVED,
            f"Cannot reach PACS {node.name!r}",
            f"the host name {node.host!r} does not resolve ({exc.strerror}): check the host",
        ) from None
    return str(infos[0][4][0])


def _make_ae(node: Node, timeout: float, dimse_timeout: float | None = None) -> AE:
    ae = AE(ae_title=node.calling_ae)
    ae.acse_timeout = timeout
    ae.connection_timeout = timeout
    ae.dimse_timeout = dimse_timeout if dimse_timeout is not None else timeout
    ae.network_timeout = max(timeout, ae.dimse_timeout)
    ae.maximum_pdu_size = MAX_PDU
    return ae


def _why_not_established(assoc: Association, node: Node, elapsed: float, timeout: float) -> PacsError:
    what = f"Cannot reach PACS {node.name!r} ({_where(node)})"
    exc = _connect_errors.get(assoc)
    if exc is not None:
        if isinstance(exc, ConnectionRefusedError):
            return PacsError(
                Failure.REFUSED,
                what,
                "connection refused: nothing listens on that port (is the PACS running, is the port right?)",
            )
        if isinstance(exc, TimeoutError | socket.timeout):
            return PacsError(
                Failure.TIMEOUT,
                what,
                f"no answer within {timeout:g} s: the host is down or a firewall drops the connection",
            )
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL):
            return PacsError(
                Failure.UNREACHABLE, what, f"no route to the host ({exc.strerror}): check the host"
            )
        return PacsError(Failure.UNREACHABLE, what, f"the connection failed ({exc.strerror or exc})")
    primitive = _answer(assoc)
    if primitive is not None and primitive.result in (0x01, 0x02):
        reason = str(primitive.reason_str)
        hint = ""
        if "called" in reason.lower():
            hint = f" — check the node's AE title {node.ae_title!r}"
        elif "calling" in reason.lower():
            hint = f" — the PACS does not accept our AE title {node.calling_ae!r}"
        return PacsError(
            Failure.REJECTED,
            f"PACS {node.name!r} rejected the association",
            f"{primitive.result_str.lower()}, by the {primitive.source_str.lower()}: {reason}{hint}",
        )
    if primitive is not None and primitive.result == 0x00 and not assoc.accepted_contexts:
        return PacsError(
            Failure.NOT_ACCEPTED,
            f"PACS {node.name!r} accepted the association but none of the services asked for",
            "it does not offer this service to us",
        )
    if primitive is None and elapsed >= timeout * 0.9:
        return PacsError(
            Failure.TIMEOUT, what, f"the PACS accepted the connection but did not answer within {timeout:g} s"
        )
    return PacsError(
        Failure.ABORTED,
        f"PACS {node.name!r} aborted the association",
        f"it may not know our AE title {node.calling_ae!r} or this host: add them to the PACS's list of modalities",
    )


def _associate(ae: AE, node: Node, timeout: float, **kwargs: Any) -> Association:
    address = _resolve(node)
    t0 = time.monotonic()
    assoc = ae.associate(address, node.port, ae_title=node.ae_title, **kwargs)
    if assoc.is_established:
        return assoc
    raise _why_not_established(assoc, node, time.monotonic() - t0, timeout)


def _answer(assoc: Association) -> A_ASSOCIATE | None:
    """The peer's A-ASSOCIATE answer, also when pynetdicom lost the race for it.

    When a peer sends A-ASSOCIATE-RJ and closes the connection at once, pynetdicom's DUL thread can take the
    rejection and close the socket before the requesting thread checks the socket is connected; that thread
    then aborts (1 in 30 against Orthanc here) and leaves the rejection unread in the DUL's queue."""
    if assoc.acceptor.primitive is not None:
        return assoc.acceptor.primitive
    for primitive in list(assoc.dul.to_user_queue.queue):
        if isinstance(primitive, A_ASSOCIATE) and primitive.result in (0x01, 0x02):
            return primitive
    return None


def _close(assoc: Association) -> None:
    if assoc.is_established:
        assoc.release()


def _no_status(node: Node, service: str, timeout: float, waited: float) -> PacsError:
    """A DIMSE request that got no status back after ``waited`` seconds: the peer did not answer in time
    (pynetdicom then aborts the association itself), or it aborted the association."""
    if waited >= timeout * 0.9:
        return PacsError(
            Failure.TIMEOUT,
            f"PACS {node.name!r} did not answer the {service}",
            f"no response within {timeout:g} s",
        )
    return PacsError(
        Failure.ABORTED,
        f"PACS {node.name!r} aborted the association during the {service}",
        f"it may not know our AE title {node.calling_ae!r} or not allow it this service: check the PACS's modality list",
    )


def _meaning(code: int, table: dict[int, tuple[str, str]]) -> str:
    if code == 0x0000:
        return "Success"
    if code == _CANCEL:
        return "Cancelled: sub-operations terminated by a C-CANCEL"
    return table.get(code, ("", "unknown status"))[1]


def _status_error(node: Node, service: str, status: Dataset, table: dict[int, tuple[str, str]]) -> PacsError:
    code = int(status.Status)
    why = f"status 0x{code:04X}: {_meaning(code, table)}"
    comment = str(status.get("ErrorComment", "") or "")
    if comment:
        why += f" — the PACS says: {comment}"
    return PacsError(Failure.STATUS, f"PACS {node.name!r} refused the {service}", why)


# -- C-ECHO --------------------------------------------------------------------------------------------------


def echo(node: Node, timeout: float = TIMEOUT_S) -> float:
    """C-ECHO ``node``; the round trip in seconds (association included).

    Raises
    ------
    PacsError
        Why it failed (see :class:`~viewer.pacs.failures.Failure`).
    """
    ae = _make_ae(node, timeout)
    ae.add_requested_context(Verification)
    t0 = time.monotonic()
    assoc = _associate(ae, node, timeout)
    try:
        sent = time.monotonic()
        status = assoc.send_c_echo()
        if not status:
            raise _no_status(node, "C-ECHO", timeout, time.monotonic() - sent)
        if int(status.Status) != 0x0000:
            raise _status_error(node, "C-ECHO", status, QR_FIND_SERVICE_CLASS_STATUS)
    finally:
        _close(assoc)
    return time.monotonic() - t0


# -- C-FIND --------------------------------------------------------------------------------------------------


def _identifier(level: str, keys: dict[str, str], **match: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in keys:
        setattr(ds, keyword, "")
    for keyword, value in match.items():
        setattr(ds, keyword, value)
    return ds


def _c_find(node: Node, ident: Dataset, limit: int | None, timeout: float) -> Iterator[tuple[Dataset, bool]]:
    """The identifiers a C-FIND answers, each with whether the cap was reached (then C-CANCEL was sent)."""
    model = StudyRootQueryRetrieveInformationModelFind
    ae = _make_ae(node, timeout)
    ae.add_requested_context(model)
    assoc = _associate(ae, node, timeout)
    try:
        n = 0
        cancelled = False
        last = time.monotonic()
        for status, answer in assoc.send_c_find(ident, model):
            if not status:
                raise _no_status(node, "C-FIND", timeout, time.monotonic() - last)
            last = time.monotonic()
            code = int(status.Status)
            if code in _PENDING:
                if cancelled or answer is None:
                    continue
                if limit is not None and n >= limit:
                    assoc.send_c_cancel(1, query_model=model)
                    cancelled = True
                    yield answer, True
                    continue
                n += 1
                yield answer, False
            elif code == 0x0000 or (code == _CANCEL and cancelled):
                return
            else:
                raise _status_error(node, "C-FIND", status, QR_FIND_SERVICE_CLASS_STATUS)
    finally:
        _close(assoc)


def find_studies(node: Node, query: StudyQuery, limit: int, timeout: float = TIMEOUT_S) -> QueryResult:
    """C-FIND at STUDY level with the query's filters; at most ``limit`` rows (``capped`` when more matched)."""
    ident = _identifier(
        "STUDY",
        STUDY_KEYS,
        PatientID=query.patient_id,
        PatientName=query.patient_name,
        StudyDate=query.date_range,
        AccessionNumber=query.accession,
        ModalitiesInStudy=query.modality,
    )
    result = QueryResult(limit=limit)
    for answer, over in _c_find(node, ident, limit, timeout):
        if over:
            result.capped = True
        else:
            result.rows.append(study_row(answer))
    return result


def find_series(node: Node, study_uid: str, limit: int, timeout: float = TIMEOUT_S) -> QueryResult:
    """C-FIND at SERIES level within one study."""
    ident = _identifier("SERIES", SERIES_KEYS, StudyInstanceUID=study_uid)
    result = QueryResult(limit=limit)
    for answer, over in _c_find(node, ident, limit, timeout):
        if over:
            result.capped = True
        else:
            result.rows.append(series_row(answer))
    result.rows.sort(key=lambda r: (r.number is None, r.number or 0))
    return result


def sop_classes(
    node: Node, study_uid: str, series_uid: str | None = None, timeout: float = TIMEOUT_S
) -> list[str]:
    """The SOP classes to propose for retrieving a study or one series: ``SOPClassesInStudy`` from a
    STUDY-level C-FIND, else the distinct SOPClassUID of an IMAGE-level C-FIND (for a PACS that does not answer
    the former)."""
    ident = _identifier("STUDY", {}, StudyInstanceUID=study_uid, SOPClassesInStudy="")
    found: list[str] = []
    for answer, _ in _c_find(node, ident, None, timeout):
        value = answer.get("SOPClassesInStudy")
        if value:
            found.extend([str(value)] if isinstance(value, str) else [str(v) for v in value])
    if found:  # the study's classes: a superset of one series', and one answer instead of one per instance
        return list(dict.fromkeys(found))
    match = {"StudyInstanceUID": study_uid, "SOPClassUID": ""}
    if series_uid is not None:
        match["SeriesInstanceUID"] = series_uid
    ident = _identifier("IMAGE", {}, SOPInstanceUID="", **match)
    return list(
        dict.fromkeys(
            str(a.SOPClassUID) for a, _ in _c_find(node, ident, None, timeout) if a.get("SOPClassUID")
        )
    )


# -- C-GET / C-MOVE ------------------------------------------------------------------------------------------


def _retrieve_identifier(study_uid: str, series_uid: str | None) -> Dataset:
    ident = Dataset()
    ident.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
    ident.StudyInstanceUID = study_uid
    if series_uid:
        ident.SeriesInstanceUID = series_uid
    return ident


class _Receiver:
    """The C-STORE handler of a retrieve: writes each instance of the study (and series) asked for into the
    store (from pynetdicom's thread) and hands the paths to the calling thread, which indexes them. An instance
    of another study or series is refused: nothing but what was asked for enters the store."""

    def __init__(self, store: LocalStore, study_uid: str, series_uid: str | None) -> None:
        self.store = store
        self.study_uid = study_uid
        self.series_uid = series_uid
        self.arrived: queue.Queue[Path] = queue.Queue()

    def on_store(self, event: evt.Event) -> int:
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            if ds.get("StudyInstanceUID") != self.study_uid or (
                self.series_uid is not None and ds.get("SeriesInstanceUID") != self.series_uid
            ):
                log.warning("received instance refused: not of the study or series asked for")
                return 0xC000  # Cannot understand
            path = self.store.write(ds)
        except ViewerError as exc:
            log.warning("received instance not stored: %s", exc.why)
            return 0xA700  # Refused: out of resources
        except Exception as exc:  # a dataset pydicom cannot decode
            log.warning("received instance not decodable: %s", type(exc).__name__)
            return 0xC210  # Cannot understand
        self.arrived.put(path)
        return 0x0000

    def drain(self) -> list[Path]:
        paths = []
        while True:
            try:
                paths.append(self.arrived.get_nowait())
            except queue.Empty:
                return paths


def _watch_cancel(
    cancel: CancelFn,
    assoc: Association,
    model: str,
    done: threading.Event,
    sent: threading.Event,
    grace_s: float,
) -> None:
    """Send C-CANCEL as soon as ``cancel()`` says so; abort the association if the peer ignores it."""
    while not done.wait(0.05):
        if cancel():
            try:
                assoc.send_c_cancel(1, query_model=model)
            except (RuntimeError, ValueError):
                return
            sent.set()
            if not done.wait(grace_s):
                log.info("the PACS ignored C-CANCEL for %.1f s: aborting the association", grace_s)
                # Not pynetdicom's blocking abort: it waits for a peer still busy sending. And its send_c_get /
                # send_c_move keep waiting for a response (up to the DIMSE timeout) after an abort: an empty
                # item ends their wait at once, as "no response" (repeated: the reactor, running again after
                # the abort, may take one first). _hang_up() then closes the connection.
                assoc.abort(block=False)
                while not done.wait(0.02):
                    assoc.dimse.msg_queue.put((None, None))
            return


def _hang_up(assoc: Association) -> None:
    """After an abort: a moment for the A-ABORT to leave, then close the connection and let pynetdicom's
    threads end (a peer that ignored C-CANCEL may never close its side)."""
    assoc.join(0.2)
    if assoc.is_alive():
        transport = assoc.dul.socket
        if transport is not None:
            transport.close()
        assoc.join(2.0)


def _run_retrieve(
    node: Node,
    assoc: Association,
    responses: Callable[[], Iterator[tuple[Dataset, Dataset | None]]],
    model: str,
    receiver: _Receiver,
    result: RetrieveResult,
    service: str,
    table: dict[int, tuple[str, str]],
    progress: RetrieveProgressFn | None,
    cancel: CancelFn | None,
) -> None:
    done, sent = threading.Event(), threading.Event()
    watcher = None
    if cancel is not None:
        watcher = threading.Thread(
            target=_watch_cancel,
            args=(cancel, assoc, model, done, sent, TIMEOUT_S),
            daemon=True,
            name="pacs-cancel",
        )
        watcher.start()

    final: Dataset | None = None
    answered = time.monotonic()
    with receiver.store.indexer() as indexer:

        def take_arrivals() -> Path | None:
            paths = receiver.drain()
            indexer.add(paths)
            result.files.extend(paths)
            return paths[-1] if paths else None

        try:
            for status, _ in responses():
                if not status:
                    break
                answered = time.monotonic()
                newest = take_arrivals()
                result.completed = int(status.get("NumberOfCompletedSuboperations", result.completed) or 0)
                result.failed = int(status.get("NumberOfFailedSuboperations", result.failed) or 0)
                result.warning = int(status.get("NumberOfWarningSuboperations", result.warning) or 0)
                remaining = status.get("NumberOfRemainingSuboperations")
                result.remaining = int(remaining) if remaining not in (None, "") else 0
                if int(status.Status) in _PENDING:
                    if progress is not None:
                        progress(
                            RetrieveProgress(
                                result.completed, result.failed, result.warning, result.remaining, newest
                            )
                        )
                    continue
                final = status
        finally:
            done.set()
            if watcher is not None:
                watcher.join()
            take_arrivals()
            _close(assoc)
            if assoc.is_aborted or getattr(assoc, "_sent_abort", False):
                _hang_up(assoc)
            # A C-STORE the handler was still writing when the association ended has been renamed into place
            # by now (its thread has ended): it belongs in the result and the index too.
            take_arrivals()
            receiver.store.clean_partials(result.folder)
    if final is None:
        if sent.is_set():
            result.cancelled, result.status, result.meaning = True, _CANCEL, _meaning(_CANCEL, table)
            return
        raise _no_status(node, service, RETRIEVE_TIMEOUT_S, time.monotonic() - answered)
    result.status = int(final.Status)
    result.meaning = _meaning(result.status, table)
    result.error_comment = str(final.get("ErrorComment", "") or "")
    result.cancelled = result.status == _CANCEL
    if progress is not None:
        progress(RetrieveProgress(result.completed, result.failed, result.warning, result.remaining, None))


def get(
    node: Node,
    store: LocalStore,
    study_uid: str,
    series_uid: str | None = None,
    *,
    progress: RetrieveProgressFn | None = None,
    cancel: CancelFn | None = None,
    timeout: float = TIMEOUT_S,
) -> RetrieveResult:
    """C-GET a study or one series into ``store``, proposing a storage context (SCP role) for each SOP class
    the study holds; files are indexed as they arrive.

    Raises
    ------
    PacsError
        No association, or the peer stopped answering. A final status other than success is in the result.
    """
    model = StudyRootQueryRetrieveInformationModelGet
    classes = sop_classes(node, study_uid, series_uid, timeout)
    result = RetrieveResult(folder=store.study_folder(study_uid), protocol="C-GET")
    if not classes:
        result.status, result.meaning = 0xA900, "the PACS lists no instance of this study or series"
        return result
    if len(classes) > MAX_CONTEXTS - 1:
        raise PacsError(
            Failure.CONFIG,
            f"Cannot C-GET this study from {node.name!r}",
            f"it holds {len(classes)} SOP classes and one association carries at most {MAX_CONTEXTS - 1}: use --move",
        )
    ae = _make_ae(node, timeout, RETRIEVE_TIMEOUT_S)
    ae.add_requested_context(model)
    for sop in classes:
        ae.add_requested_context(sop, _UNCOMPRESSED)
    receiver = _Receiver(store, study_uid, series_uid)
    assoc = _associate(
        ae,
        node,
        timeout,
        ext_neg=[build_role(sop, scp_role=True) for sop in classes],
        evt_handlers=[(evt.EVT_C_STORE, receiver.on_store)],
    )
    ident = _retrieve_identifier(study_uid, series_uid)
    _run_retrieve(
        node,
        assoc,
        lambda: assoc.send_c_get(ident, model),
        model,
        receiver,
        result,
        "C-GET",
        QR_GET_SERVICE_CLASS_STATUS,
        progress,
        cancel,
    )
    return result


def _move_hint(result: RetrieveResult, destination: str, node: Node) -> str:
    """What to check when a C-MOVE failed before moving anything: the standard says 0xA801 when the PACS does
    not know the destination; Orthanc (1.10) answers 0xC000 with no ErrorComment (its log: "Unknown modality
    for AET")."""
    if result.cancelled or result.completed or result.status in (0x0000, *_PENDING):
        return ""
    entry = f"AE title {destination}, this computer's address, port {node.move_port}"
    if result.status == 0xA801:
        return (
            f"The PACS does not know the move destination {destination!r}: add it ({entry}) to its modalities"
        )
    if result.status & 0xF000 == 0xC000:
        return (
            f"Nothing was moved: if the PACS does not know the move destination {destination!r}, add it ({entry}) "
            "to its modalities, or retrieve with C-GET"
        )
    return ""


def move(
    node: Node,
    store: LocalStore,
    study_uid: str,
    series_uid: str | None = None,
    *,
    progress: RetrieveProgressFn | None = None,
    cancel: CancelFn | None = None,
    timeout: float = TIMEOUT_S,
    bind_host: str = "127.0.0.1",
    destination: str | None = None,
) -> RetrieveResult:
    """C-MOVE a study or one series to our own storage SCP (``bind_host:node.move_port``, running only for
    the move, accepting only the node's AE title), which writes into ``store``. ``destination``: the move
    destination's AE title, which our SCP takes too (default: our calling AE title); the PACS must know it,
    with our host and ``move_port``.

    Raises
    ------
    PacsError
        The SCP cannot listen, no association, or the peer stopped answering.
    """
    model = StudyRootQueryRetrieveInformationModelMove
    destination = validate_ae_title(destination, "move destination") if destination else node.calling_ae
    receiver = _Receiver(store, study_uid, series_uid)
    scp = AE(ae_title=destination)
    scp.maximum_pdu_size = MAX_PDU
    scp.network_timeout = RETRIEVE_TIMEOUT_S
    scp.require_calling_aet = [node.ae_title]
    scp.supported_contexts = AllStoragePresentationContexts
    try:
        server = scp.start_server(
            (bind_host, node.move_port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, receiver.on_store), (evt.EVT_CONN_OPEN, nodelay_on_accept)],
        )
    except OSError as exc:
        raise PacsError(
            Failure.CONFIG,
            f"Cannot receive a C-MOVE from {node.name!r}",
            f"our storage SCP cannot listen on {bind_host}:{node.move_port} ({exc.strerror or exc})",
        ) from None
    result = RetrieveResult(folder=store.study_folder(study_uid), protocol="C-MOVE")
    try:
        ae = _make_ae(node, timeout, RETRIEVE_TIMEOUT_S)
        ae.add_requested_context(model)
        assoc = _associate(ae, node, timeout)
        ident = _retrieve_identifier(study_uid, series_uid)
        _run_retrieve(
            node,
            assoc,
            lambda: assoc.send_c_move(ident, destination, model),
            model,
            receiver,
            result,
            "C-MOVE",
            QR_MOVE_SERVICE_CLASS_STATUS,
            progress,
            cancel,
        )
    finally:
        server.shutdown()
        _end_store_associations(scp, abort=result.cancelled or not result.ok)
        store.clean_partials(result.folder)
    result.hint = _move_hint(result, destination, node)
    extra = receiver.drain()  # sub-operations that finished as the move's final response came, or after
    if extra:
        store.index(extra)
        result.files.extend(extra)
    return result


def _end_store_associations(scp: AE, abort: bool) -> None:
    """Wait for the PACS's store associations to our C-MOVE SCP to end (a moment for a release; aborted at once
    after a cancel or failure), so that no write is still under way when the move returns: every file is then
    complete, in the result and indexed, and no ``.partial`` file is left behind."""
    for assoc in scp.active_associations:
        assoc.join(0 if abort else 2.0)
        if assoc.is_alive():
            assoc.abort()
            assoc.join(RETRIEVE_TIMEOUT_S)
