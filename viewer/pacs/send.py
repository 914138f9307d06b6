"""Sending datasets to a PACS: C-STORE (one presentation context per SOP class and transfer syntax, as an SCP
accepts one syntax per context and pynetdicom does not transcode) or STOW-RS for DICOMweb nodes.

Every instance's outcome is kept: success, success with a warning (the archive coerced or discarded something;
its status and comment are kept), or failure with the status's meaning and ErrorComment. A send that stores
nothing raises; a partial one returns its failures for the caller to show.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import requests
from pydicom.dataset import Dataset
from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS

from viewer.pacs import web
from viewer.pacs.dimse import TIMEOUT_S, _associate, _close, _make_ae, _meaning, _no_status
from viewer.pacs.failures import Failure, PacsError
from viewer.pacs.nodes import Node
from viewer.progress import CancelFn

#: The longest wait for one C-STORE response (a large instance on a slow link).
STORE_TIMEOUT_S = 60.0
_WARNINGS = (0x0001, 0xB000, 0xB006, 0xB007)

#: ``(done, total, message)`` after each instance.
SendProgressFn = Callable[[int, int, str], None]


@dataclass
class SendResult:
    """What a send did: instances stored (``stored``), stored with a warning (``warnings``: SOP Instance UID →
    why) and refused (``failed``: SOP Instance UID → why)."""

    protocol: str
    stored: list[str] = field(default_factory=list)
    warnings: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        """Every instance stored (warnings allowed) and nothing cancelled."""
        return not self.failed and not self.cancelled

    def summary(self) -> str:
        """One sentence for the user."""
        total = len(self.stored) + len(self.failed)
        words = f"{len(self.stored)} of {total} instances stored by {self.protocol}"
        if self.warnings:
            words += f" ({len(self.warnings)} with a warning)"
        if self.failed:
            words += f"; {len(self.failed)} refused: " + "; ".join(sorted(set(self.failed.values())))
        if self.cancelled:
            words += "; cancelled before the rest were sent"
        return words


def _why(status: Dataset) -> str:
    code = int(status.Status)
    why = f"status 0x{code:04X}: {_meaning(code, STORAGE_SERVICE_CLASS_STATUS)}"
    comment = str(status.get("ErrorComment", "") or "")
    return why + (f" — the PACS says: {comment}" if comment else "")


def c_store(
    node: Node,
    datasets: Sequence[Dataset],
    *,
    progress: SendProgressFn | None = None,
    cancel: CancelFn | None = None,
    timeout: float = TIMEOUT_S,
) -> SendResult:
    """C-STORE ``datasets`` (each with its file meta) to ``node`` over one association.

    Raises
    ------
    PacsError
        No association, or not one instance stored.
    """
    ae = _make_ae(node, timeout, STORE_TIMEOUT_S)
    contexts = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets})
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    result = SendResult("C-STORE")
    assoc = _associate(ae, node, timeout)
    try:
        accepted = {(c.abstract_syntax, c.transfer_syntax[0]) for c in assoc.accepted_contexts}
        for n, ds in enumerate(datasets, start=1):
            uid = str(ds.SOPInstanceUID)
            if cancel is not None and cancel():
                result.cancelled = True
                break
            if (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) not in accepted:
                result.failed[uid] = (
                    f"the PACS does not accept {ds.SOPClassUID.name} in {ds.file_meta.TransferSyntaxUID.name}"
                )
                continue
            sent = time.monotonic()
            status = assoc.send_c_store(ds)
            if not status:
                raise _no_status(node, "C-STORE", STORE_TIMEOUT_S, time.monotonic() - sent)
            code = int(status.Status)
            if code == 0x0000 or code in _WARNINGS:
                result.stored.append(uid)
                if code:
                    result.warnings[uid] = _why(status)
            else:
                result.failed[uid] = _why(status)
            if progress is not None:
                progress(n, len(datasets), f"Sent {n} of {len(datasets)}")
    finally:
        _close(assoc)
    if not result.stored and not result.cancelled:
        raise PacsError(
            Failure.STATUS,
            f"PACS {node.name!r} stored none of the {len(datasets)} instances",
            result.summary(),
        )
    return result


def stow(
    node: Node,
    secret: str | None,
    datasets: Sequence[Dataset],
    *,
    progress: SendProgressFn | None = None,
    timeout: float = TIMEOUT_S,
) -> SendResult:
    """STOW-RS ``datasets`` to ``node`` in one request; the response's Failed SOP Sequence names refusals."""
    from dicomweb_client.api import DICOMwebClient

    s = web.session(node, secret)
    result = SendResult("STOW-RS")
    try:
        client = DICOMwebClient(node.web_url, session=s, timeout=(timeout, STORE_TIMEOUT_S))
        response = client.store_instances(list(datasets))
    except requests.RequestException as exc:
        raise web._http_error(node, f"Cannot send to PACS {node.name!r}", exc) from None
    finally:
        s.close()
    failed = {
        str(item.ReferencedSOPInstanceUID): f"failure reason {int(item.get('FailureReason', 0)):#06x}"
        for item in response.get("FailedSOPSequence", [])
    }
    for ds in datasets:
        uid = str(ds.SOPInstanceUID)
        if uid in failed:
            result.failed[uid] = failed[uid]
        else:
            result.stored.append(uid)
    if progress is not None:
        progress(len(datasets), len(datasets), f"Sent {len(datasets)}")
    if not result.stored:
        raise PacsError(
            Failure.STATUS,
            f"PACS {node.name!r} stored none of the {len(datasets)} instances",
            result.summary(),
        )
    return result
