"""De-identification of what a report shows and exports: DICOM PS3.15 Annex E, Basic Application Level
Confidentiality Profile, applied to every attribute in :class:`~viewer.report.identifiers.ReportIdentifiers`.

Actions, as the profile names them: **Z** replace with an empty or dummy value, **X** remove, **U** replace a
UID by another, consistently within the set. Identifiers (patient ID, name) become a keyed-hash pseudonym and
UIDs new ``2.25`` UIDs made from a keyed hash, so the same source gives the same pseudonym on this installation
(a report and its DICOM copy share the pseudonymised study) while nobody without the key can derive the source
back, not even by hashing candidate IDs: the key is a random secret kept in the user's data folder
(:func:`installation_key`), never written into a report or a log.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

from viewer import __version__
from viewer.report.identifiers import ReportIdentifiers

DATA_DIR_ENV = "GRU_VIEWER_DATA_DIR"
KEY_FILE = "pseudonym.key"
PSEUDONYM_PREFIX = "ANON-"

#: The profile's code for DeidentificationMethodCodeSequence (PS3.16 CID 7050).
BASIC_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")
METHOD = f"DICOM PS3.15 Annex E Basic Profile (GRU Viewer {__version__})"  # LO: 64 characters at most


@dataclass(frozen=True)
class ProfileAction:
    """What the profile does to one attribute the report carries."""

    field: str
    keyword: str
    tag: str
    action: str
    done: str


#: Every identifying field of :class:`ReportIdentifiers`, with the Basic Profile's action and what we do.
BASIC_PROFILE: tuple[ProfileAction, ...] = (
    ProfileAction("patient_name", "PatientName", "(0010,0010)", "Z", "dummy: the pseudonym as family name"),
    ProfileAction("patient_id", "PatientID", "(0010,0020)", "Z", "keyed-hash pseudonym"),
    ProfileAction("patient_birth_date", "PatientBirthDate", "(0010,0030)", "Z", "empty"),
    ProfileAction("patient_sex", "PatientSex", "(0010,0040)", "Z", "empty"),
    ProfileAction("study_uid", "StudyInstanceUID", "(0020,000D)", "U", "keyed-hash UID"),
    ProfileAction("study_id", "StudyID", "(0020,0010)", "Z", "empty"),
    ProfileAction("study_date", "StudyDate", "(0008,0020)", "Z", "empty"),
    ProfileAction("study_time", "StudyTime", "(0008,0030)", "Z", "empty"),
    ProfileAction("study_description", "StudyDescription", "(0008,1030)", "X", "removed"),
    ProfileAction("accession_number", "AccessionNumber", "(0008,0050)", "Z", "empty"),
    ProfileAction("referring_physician", "ReferringPhysicianName", "(0008,0090)", "Z", "empty"),
    ProfileAction("institution", "InstitutionName", "(0008,0080)", "X", "removed"),
    ProfileAction("series_uid", "SeriesInstanceUID", "(0020,000E)", "U", "keyed-hash UID"),
    ProfileAction("series_description", "SeriesDescription", "(0008,103E)", "X", "removed"),
    ProfileAction("source_sop_uids", "ReferencedSOPInstanceUID", "(0008,1155)", "U", "keyed-hash UIDs"),
)
#: Kept, as the profile keeps them: modality, series number, slice count and geometry, the SOP Class.


def data_dir() -> Path:
    """``$GRU_VIEWER_DATA_DIR``, else the platform's user data folder."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("gru-viewer", appauthor=False))


def installation_key() -> bytes:
    """This installation's pseudonym key (32 random bytes), made on first use and kept readable by the user only.

    Deleting it makes later pseudonyms differ from earlier ones; copying it to another machine makes that
    machine's pseudonyms match.
    """
    path = data_dir() / KEY_FILE
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    os.replace(tmp, path)
    return key


def _digest(key: bytes, kind: str, value: str) -> bytes:
    return hmac.new(key, f"{kind}\0{value}".encode(), hashlib.sha256).digest()


def pseudonym(value: str, key: bytes) -> str:
    """``ANON-`` and 12 hex digits of a keyed hash of ``value``."""
    return PSEUDONYM_PREFIX + _digest(key, "patient", value).hex()[:12].upper()


def pseudo_uid(uid: str, key: bytes) -> str:
    """A new UID for ``uid``: ``2.25.<integer of a UUID made from a keyed hash>`` (PS3.5 B.2); empty stays empty."""
    if not uid:
        return ""
    value = uuid.UUID(bytes=_digest(key, "uid", uid)[:16], version=4)
    return f"2.25.{value.int}"


def _patient_basis(ids: ReportIdentifiers) -> str:
    """What the patient pseudonym is made from: the ID, else name and birth date, else the study."""
    if ids.patient_id:
        return "id:" + ids.patient_id
    if ids.patient_name or ids.patient_birth_date:
        return f"name:{ids.patient_name}|{ids.patient_birth_date}"
    return "study:" + ids.study_uid


def deidentify(ids: ReportIdentifiers, key: bytes | None = None) -> ReportIdentifiers:
    """Apply :data:`BASIC_PROFILE` to ``ids`` (``key``: the pseudonym key, default :func:`installation_key`)."""
    if ids.deidentified:
        return ids
    key = installation_key() if key is None else key
    patient = pseudonym(_patient_basis(ids), key)
    changes: dict[str, object] = {}
    for entry in BASIC_PROFILE:
        if entry.field == "source_sop_uids":
            changes[entry.field] = tuple(pseudo_uid(u, key) for u in ids.source_sop_uids)
        elif entry.action == "U":
            changes[entry.field] = pseudo_uid(getattr(ids, entry.field), key)
        else:
            changes[entry.field] = ""
    changes["patient_name"] = patient + "^"  # a family-name-only PN: the pseudonym
    changes["patient_id"] = patient
    return dataclasses.replace(ids, deidentified=True, **changes)  # type: ignore[arg-type]
