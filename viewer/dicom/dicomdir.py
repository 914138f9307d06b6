"""The file list of a DICOMDIR, with every referenced path checked to stay inside the DICOMDIR's folder.

A DICOMDIR (PS3.10 media directory) names its files by ReferencedFileID, a list of path components relative
to its own folder. pydicom before 3.0.2 followed ``..`` components (CVE-2026-32711), so a crafted DICOMDIR
could make a viewer read any file on the machine. Here each ID is validated component by component and the
resolved path (symbolic links included) must lie inside the folder; anything else is refused with a reason,
never read. Patient, study and series are not taken from the DICOMDIR's records: the files are header-read
like any others, so a DICOMDIR that disagrees with its files cannot mislead the index.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field

import pydicom
from pydicom.errors import InvalidDicomError

OUTSIDE = "refers outside its folder"
_INACTIVE = 0x0000  # RecordInUseFlag of a deleted record
# A component is a file or folder name: no separators, no drive letters, no control characters.
_BAD_COMPONENT = re.compile(r"[\\/:\x00-\x1f]")


@dataclass(slots=True)
class DicomdirListing:
    """What a DICOMDIR lists: files that exist inside its folder, and records refused with the reason."""

    path: str
    files: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


class _CaseInsensitiveFinder:
    """Finds ``a/b/c`` as ``A/B/C`` too: media written with upper-case IDs are often copied in lower case."""

    def __init__(self) -> None:
        self._listings: dict[str, dict[str, str]] = {}

    def find(self, root: str, parts: list[str]) -> str | None:
        current = root
        for part in parts:
            exact = os.path.join(current, part)
            if os.path.lexists(exact):
                current = exact
                continue
            listing = self._listings.get(current)
            if listing is None:
                try:
                    names = os.listdir(current)
                except OSError:
                    return None
                listing = {n.upper(): n for n in names}
                self._listings[current] = listing
            match = listing.get(part.upper())
            if match is None:
                return None
            current = os.path.join(current, match)
        return current


def _components(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split("\\")
    return [str(v) for v in value]  # a MultiValue of the components


def check_file_id(components: list[str]) -> str | None:
    """Why a ReferencedFileID may not be followed (``None`` if it is a plain relative path).

    ``..`` and absolute paths (a leading separator or a drive letter) are refused as referring outside the
    folder; empty components and ones holding separators or control characters as invalid.
    """
    if not components:
        return "has an empty file ID"
    if len(components) > 1 and not components[0].strip():
        return OUTSIDE  # "\\dir\\file": rooted at the top of the drive
    for part in components:
        stripped = part.strip()
        pieces = re.split(r"[\\/]", stripped)
        if stripped.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", stripped) or ".." in pieces:
            return OUTSIDE
        if not stripped or _BAD_COMPONENT.search(stripped):
            return f"has an invalid file ID component {part!r}"
    return None


def _inside(path: str, root_real: str) -> bool:
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def read_dicomdir(path: str | os.PathLike[str]) -> DicomdirListing:
    """List the files a DICOMDIR references, refusing any that would lie outside its folder.

    Never raises for a bad DICOMDIR: an unreadable one gives an empty listing with one refusal saying why.
    """
    p = os.path.abspath(os.fspath(path))
    listing = DicomdirListing(p)
    root = os.path.dirname(p)
    root_real = os.path.realpath(root)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(p, force=False)
        records = ds.get("DirectoryRecordSequence") or []
    except (InvalidDicomError, EOFError):
        listing.refused.append((p, "DICOMDIR is not a DICOM file or is truncated"))
        return listing
    except OSError as exc:
        listing.refused.append((p, f"DICOMDIR cannot be read ({exc.strerror or exc})"))
        return listing
    except Exception as exc:  # pydicom raises many types for malformed files
        listing.refused.append((p, f"unreadable DICOMDIR ({type(exc).__name__}: {exc})"))
        return listing

    finder = _CaseInsensitiveFinder()
    seen: set[str] = set()
    for record in records:
        try:
            if "ReferencedFileID" not in record or record.get("RecordInUseFlag", 0xFFFF) == _INACTIVE:
                continue
            parts = _components(record.ReferencedFileID)
        except Exception as exc:
            listing.refused.append((p, f"a DICOMDIR record is unreadable ({type(exc).__name__}: {exc})"))
            continue
        shown = "/".join(parts)
        problem = check_file_id(parts)
        if problem is not None:
            listing.refused.append((p, f"a DICOMDIR record {problem}: '{shown}' (not read)"))
            continue
        parts = [part.strip() for part in parts]
        found = finder.find(root, parts)
        if found is None:
            listing.refused.append((os.path.join(root, *parts), "listed in the DICOMDIR but missing"))
            continue
        if not _inside(found, root_real):
            listing.refused.append(
                (p, f"a DICOMDIR record {OUTSIDE} through a symbolic link: '{shown}' (not read)")
            )
            continue
        if found not in seen:
            seen.add(found)
            listing.files.append(found)
    return listing
