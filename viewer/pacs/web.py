"""DICOMweb with requests and dicomweb-client: a QIDO-RS connection test, study and series search (the same
rows as C-FIND), and WADO-RS retrieval into the local store.

Orthanc's DICOMweb plugin 1.7 does not decode percent-encoded query values, so a name such as ``Doe^J*``
(``^`` must be encoded in a URL) would match nothing. Query values are therefore sent with every character that
would need encoding replaced by the single-character wildcard ``?`` (a wider match, which every QIDO server
reads the same), and the rows are then filtered here by the exact pattern.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import requests
from pydicom.dataset import Dataset

from viewer.pacs.failures import Failure, PacsError
from viewer.pacs.nodes import Node
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
RETRIEVE_TIMEOUT_S = 60.0
_JSON = "application/dicom+json"
_URL_SAFE = re.compile(r"[A-Za-z0-9*?._~-]")

log = logging.getLogger(__name__)


def session(node: Node, secret: str | None) -> requests.Session:
    """An HTTP session carrying the node's credentials (never logged: requests does not log headers)."""
    if not node.has_web:
        raise PacsError(Failure.CONFIG, f"PACS node {node.name!r} has no DICOMweb URL", "give --web-url")
    s = requests.Session()
    if node.auth == "basic":
        s.auth = (node.username, secret or "")
    elif node.auth == "bearer":
        s.headers["Authorization"] = f"Bearer {secret or ''}"
    return s


def _http_error(node: Node, what: str, exc: Exception) -> PacsError:
    where = f"{what} ({node.web_url})"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        if code == 401:
            return PacsError(
                Failure.UNAUTHORIZED, where, "HTTP 401: the user name or password (or token) was not accepted"
            )
        if code == 403:
            return PacsError(Failure.FORBIDDEN, where, "HTTP 403: these credentials may not use this service")
        return PacsError(Failure.HTTP, where, f"HTTP {code} {exc.response.reason}")
    if isinstance(exc, requests.Timeout):
        return PacsError(
            Failure.TIMEOUT, where, "no answer in time: the host is down or a firewall drops the connection"
        )
    if isinstance(exc, requests.ConnectionError):
        chain: list[BaseException] = []
        cause: BaseException | None = exc
        while cause is not None and len(chain) < 10:
            chain.append(cause)
            cause = (
                cause.__cause__
                or cause.__context__
                or (cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else None)
            )
        text = " ".join(type(c).__name__ + ": " + str(c) for c in chain)
        if any(isinstance(c, ConnectionRefusedError) for c in chain) or "Connection refused" in text:
            return PacsError(
                Failure.REFUSED,
                where,
                "connection refused: nothing listens there (is the server running, is the port right?)",
            )
        if "NameResolution" in text or "Name or service not known" in text or "name resolution" in text:
            return PacsError(Failure.UNRESOLVED, where, "the host name does not resolve: check the URL")
        return PacsError(Failure.UNREACHABLE, where, "the connection failed: no route to the host")
    return PacsError(Failure.HTTP, where, type(exc).__name__)


def _query_string(params: dict[str, str | list[str]]) -> str:
    parts = []
    for key, value in params.items():
        for v in value if isinstance(value, list) else [value]:
            parts.append(f"{key}={''.join(c if _URL_SAFE.fullmatch(c) else '?' for c in v)}")
    return "&".join(parts)


def _pattern(value: str, case_sensitive: bool) -> re.Pattern[str]:
    """A DICOM wildcard match (``*`` any run, ``?`` one character) as a regex on the whole value."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value)
    return re.compile(body, 0 if case_sensitive else re.IGNORECASE)


def _get_json(
    s: requests.Session, node: Node, path: str, params: dict[str, Any], timeout: float, what: str
) -> list:
    url = f"{node.web_url}/{path}"
    query = _query_string(params)
    try:
        rsp = s.get(f"{url}?{query}" if query else url, headers={"Accept": _JSON}, timeout=(timeout, timeout))
        rsp.raise_for_status()
    except requests.RequestException as exc:
        raise _http_error(node, what, exc) from None
    if rsp.status_code == 204 or not rsp.content:
        return []
    try:
        data = rsp.json()
    except ValueError:
        raise PacsError(Failure.HTTP, f"{what} ({node.web_url})", "the answer is not DICOM JSON") from None
    return data if isinstance(data, list) else []


def _dataset(item: dict) -> Dataset:
    return Dataset.from_json(item)


def test(node: Node, secret: str | None, timeout: float = TIMEOUT_S) -> float:
    """A QIDO-RS study search with ``limit=1``; the round trip in seconds.

    Raises
    ------
    PacsError
        HTTP 401/403, refused, unresolved, unreachable, timeout.
    """
    t0 = time.monotonic()
    _get_json(
        session(node, secret), node, "studies", {"limit": "1"}, timeout, f"Cannot query PACS {node.name!r}"
    )
    return time.monotonic() - t0


def find_studies(
    node: Node, secret: str | None, query: StudyQuery, limit: int, timeout: float = TIMEOUT_S
) -> QueryResult:
    """QIDO-RS study search with the query's filters: the same rows as :func:`viewer.pacs.dimse.find_studies`."""
    params: dict[str, Any] = {"includefield": list(STUDY_KEYS), "limit": str(limit + 1)}
    exact: list[tuple[str, re.Pattern[str]]] = []
    for keyword, value, case in (
        ("PatientID", query.patient_id, True),
        ("PatientName", query.patient_name, False),
        ("StudyDate", query.date_range, True),
        ("AccessionNumber", query.accession, True),
        ("ModalitiesInStudy", query.modality, True),
    ):
        if value:
            params[keyword] = value
            if _query_string({keyword: value}) != f"{keyword}={value}":
                exact.append((keyword, _pattern(value, case)))
    with session(node, secret) as s:
        data = _get_json(s, node, "studies", params, timeout, f"Cannot query PACS {node.name!r}")
    rows = [study_row(_dataset(item)) for item in data]
    for keyword, pattern in exact:
        field = STUDY_KEYS[keyword]
        rows = [r for r in rows if pattern.fullmatch(str(getattr(r, field)))]
    result = QueryResult(limit=limit)
    result.capped = len(data) > limit
    result.rows = rows[:limit]
    return result


def find_series(
    node: Node, secret: str | None, study_uid: str, limit: int, timeout: float = TIMEOUT_S
) -> QueryResult:
    """QIDO-RS series search within one study."""
    params: dict[str, Any] = {"includefield": list(SERIES_KEYS), "limit": str(limit + 1)}
    with session(node, secret) as s:
        data = _get_json(
            s, node, f"studies/{study_uid}/series", params, timeout, f"Cannot query PACS {node.name!r}"
        )
    rows = sorted(
        (series_row(_dataset(item)) for item in data), key=lambda r: (r.number is None, r.number or 0)
    )
    result = QueryResult(limit=limit, capped=len(rows) > limit, rows=rows[:limit])
    return result


def _expected(
    node: Node, s: requests.Session, study_uid: str, series_uid: str | None, timeout: float
) -> int | None:
    """How many instances the retrieve should bring (for "remaining"), from a QIDO count, if the server says."""
    try:
        if series_uid:
            data = _get_json(
                s,
                node,
                f"studies/{study_uid}/series",
                {"SeriesInstanceUID": series_uid, "includefield": ["NumberOfSeriesRelatedInstances"]},
                timeout,
                "count",
            )
            key = "NumberOfSeriesRelatedInstances"
        else:
            data = _get_json(
                s,
                node,
                "studies",
                {"StudyInstanceUID": study_uid, "includefield": ["NumberOfStudyRelatedInstances"]},
                timeout,
                "count",
            )
            key = "NumberOfStudyRelatedInstances"
        value = _dataset(data[0]).get(key) if data else None
        return int(value) if value not in (None, "") else None
    except (PacsError, ValueError, TypeError):
        return None


def retrieve(
    node: Node,
    secret: str | None,
    store: LocalStore,
    study_uid: str,
    series_uid: str | None = None,
    *,
    progress: RetrieveProgressFn | None = None,
    cancel: CancelFn | None = None,
    timeout: float = TIMEOUT_S,
) -> RetrieveResult:
    """WADO-RS a study or one series into ``store``, instance by instance (each indexed as it arrives).

    Raises
    ------
    PacsError
        HTTP or connection failure before anything arrived; later failures end the result with status 0xC000.
    """
    from dicomweb_client.api import DICOMwebClient

    s = session(node, secret)
    responses: list[requests.Response] = []  # closed at the end: a cancelled stream is otherwise left open
    s.hooks["response"].append(lambda r, *args, **kwargs: responses.append(r))
    expected = _expected(node, s, study_uid, series_uid, timeout)
    client = DICOMwebClient(node.web_url, session=s, timeout=(timeout, RETRIEVE_TIMEOUT_S))
    result = RetrieveResult(folder=store.study_folder(study_uid), protocol="WADO-RS")
    instances = None
    with store.indexer() as indexer:
        try:
            # dicomweb-client sends the request when asked for the iterator, then yields instances as they come.
            instances = (
                client.iter_series(study_uid, series_uid) if series_uid else client.iter_study(study_uid)
            )
            for ds in instances:
                if cancel is not None and cancel():
                    result.cancelled = True
                    result.status, result.meaning = 0xFE00, "Cancelled at the user's request"
                    break
                path = store.write(ds)
                indexer.add([path])
                result.files.append(path)
                result.completed += 1
                if progress is not None:
                    remaining = max(0, expected - result.completed) if expected is not None else None
                    progress(RetrieveProgress(result.completed, 0, 0, remaining, path))
        except requests.RequestException as exc:
            err = _http_error(node, f"Cannot retrieve from PACS {node.name!r}", exc)
            if not result.files:
                raise err from None
            result.status, result.meaning = 0xC000, err.why
        finally:
            close = getattr(instances, "close", None)
            if close is not None:
                close()
            for rsp in responses:
                rsp.close()
            s.close()
            store.clean_partials(result.folder)
    if expected is not None:
        result.remaining = max(0, expected - result.completed)
    if not result.cancelled and result.status == 0 and expected is not None and result.completed < expected:
        result.failed = result.remaining
        result.status, result.meaning = 0xB000, f"{result.remaining} of {expected} instances did not arrive"
    return result
