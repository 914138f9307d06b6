"""The front door for the CLI and the GUI: test, search and retrieve on a node, by DIMSE or DICOMweb.

``via`` picks the protocol: "dimse", "web", or "auto" (DIMSE when the node has a DIMSE address, else DICOMweb).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydicom.dataset import Dataset

from viewer.pacs import dimse, web
from viewer.pacs import send as sending
from viewer.pacs.failures import Failure, PacsError
from viewer.pacs.nodes import Node
from viewer.pacs.query import DEFAULT_LIMIT, QueryResult, StudyQuery
from viewer.pacs.retrieve import RetrieveProgressFn, RetrieveResult
from viewer.pacs.store import LocalStore
from viewer.progress import CancelFn

VIA = ("auto", "dimse", "web")


def protocol(node: Node, via: str = "auto") -> str:
    """ "dimse" or "web" for this node and choice.

    Raises
    ------
    PacsError
        The node lacks what the choice needs.
    """
    if via == "auto":
        return "dimse" if node.has_dimse else "web"
    if via == "dimse" and not node.has_dimse:
        raise PacsError(
            Failure.CONFIG, f"PACS node {node.name!r} has no DIMSE address", "add an AE title and host"
        )
    if via == "web" and not node.has_web:
        raise PacsError(Failure.CONFIG, f"PACS node {node.name!r} has no DICOMweb URL", "add --web-url")
    if via not in VIA:
        raise ValueError(via)
    return via


def test(node: Node, secret: str | None = None, via: str = "auto", timeout: float = dimse.TIMEOUT_S) -> str:
    """Check the node answers; a sentence saying how, or :class:`PacsError` saying why not."""
    if protocol(node, via) == "dimse":
        seconds = dimse.echo(node, timeout)
        return f"C-ECHO to {node.ae_title} at {node.host}:{node.port} succeeded in {seconds * 1000:.0f} ms"
    seconds = web.test(node, secret, timeout)
    return f"QIDO-RS query to {node.web_url} succeeded in {seconds * 1000:.0f} ms"


def find_studies(
    node: Node, query: StudyQuery, *, limit: int = DEFAULT_LIMIT, via: str = "auto", secret: str | None = None
) -> QueryResult:
    """Studies matching ``query``, at most ``limit`` (``capped`` says when more matched)."""
    if protocol(node, via) == "dimse":
        return dimse.find_studies(node, query, limit)
    return web.find_studies(node, secret, query, limit)


def find_series(
    node: Node, study_uid: str, *, limit: int = DEFAULT_LIMIT, via: str = "auto", secret: str | None = None
) -> QueryResult:
    """The series of one study."""
    if protocol(node, via) == "dimse":
        return dimse.find_series(node, study_uid, limit)
    return web.find_series(node, secret, study_uid, limit)


def retrieve(
    node: Node,
    study_uid: str,
    series_uid: str | None = None,
    *,
    move: bool = False,
    via: str = "auto",
    secret: str | None = None,
    store: LocalStore | None = None,
    progress: RetrieveProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> RetrieveResult:
    """Retrieve a study or series into the private store (default :class:`LocalStore`): C-GET, C-MOVE when
    ``move``, WADO-RS for DICOMweb. Files are indexed as they arrive; ``result.folder`` is the study folder."""
    store = store if store is not None else LocalStore()
    kind = protocol(node, "dimse" if move else via)
    if kind == "web":
        return web.retrieve(node, secret, store, study_uid, series_uid, progress=progress, cancel=cancel)
    fetch = dimse.move if move else dimse.get
    return fetch(node, store, study_uid, series_uid, progress=progress, cancel=cancel)


def send(
    node: Node,
    datasets: Sequence[Dataset],
    *,
    via: str = "auto",
    secret: str | None = None,
    progress: sending.SendProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> sending.SendResult:
    """Store ``datasets`` on ``node``: C-STORE, or STOW-RS for DICOMweb."""
    if protocol(node, via) == "dimse":
        return sending.c_store(node, datasets, progress=progress, cancel=cancel)
    return sending.stow(node, secret, datasets, progress=progress)
