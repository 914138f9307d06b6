"""What can go wrong talking to a PACS, as one error type whose ``kind`` a caller (or a test) can tell apart and
whose message is a sentence a user can act on."""

from __future__ import annotations

from enum import StrEnum

from viewer.errors import ViewerError


class Failure(StrEnum):
    """The kinds of failure a connection test distinguishes."""

    UNRESOLVED = "unresolved"  # the host name does not resolve
    REFUSED = "refused"  # TCP connection refused: nothing listens there
    UNREACHABLE = "unreachable"  # no route to the host or network
    TIMEOUT = "timeout"  # no answer in time (connect, association or response)
    REJECTED = "rejected"  # A-ASSOCIATE-RJ, with its reason
    ABORTED = "aborted"  # A-ABORT / A-P-ABORT from the peer
    NOT_ACCEPTED = "not-accepted"  # association up, but the service's presentation context was refused
    UNAUTHORIZED = "unauthorized"  # HTTP 401
    FORBIDDEN = "forbidden"  # HTTP 403
    HTTP = "http"  # any other HTTP error
    STATUS = "status"  # a DIMSE final status other than success
    CONFIG = "config"  # the node lacks what the operation needs


class PacsError(ViewerError):
    """A failure talking to a PACS node; ``kind`` says which (see :class:`Failure`)."""

    def __init__(self, kind: Failure, what: str, why: str = "") -> None:
        self.kind = kind
        super().__init__(what, why)
