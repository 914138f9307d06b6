"""The analysed series' own headers, re-read from its files for the DICOM result objects to reference.

Result objects (structured report, key images, segmentation) join the source study and point at the slices they
were made from, so they need those slices' headers: identifiers, UIDs and geometry as the files hold them. Only
headers are read (no pixels), and each file must still hold the instance the volume was loaded from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from viewer.errors import ViewerError

_WHAT = "Cannot make the DICOM result objects"


def source_headers(volume: Any, indices: Sequence[int]) -> list[Dataset]:
    """Headers of slices ``indices`` of ``volume``, in that order, read from the files it was loaded from.

    Raises
    ------
    ViewerError
        The volume does not know its files, a file is gone or unreadable, or it now holds another instance.
    """
    sources = list(getattr(volume, "sources", []) or [])
    sop_uids = list(getattr(volume, "sop_uids", []) or [])
    if len(sources) != volume.n_slices:
        raise ViewerError(_WHAT, "the loaded series does not record which file each slice came from")
    headers: list[Dataset] = []
    cache: dict[str, Dataset] = {}
    for k in indices:
        path, _frame = sources[k]
        if path not in cache:
            try:
                cache[path] = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            except (OSError, pydicom.errors.InvalidDicomError) as exc:
                raise ViewerError(_WHAT, f"slice {k + 1}'s file can no longer be read ({exc})", path) from exc
        ds = cache[path]
        if k < len(sop_uids) and str(ds.get("SOPInstanceUID", "")) != str(sop_uids[k]):
            raise ViewerError(
                _WHAT, f"slice {k + 1}'s file now holds another instance than was analysed", path
            )
        headers.append(ds)
    return headers


def single_frame(headers: Sequence[Dataset]) -> bool:
    """True when every header is a single-frame image (one file per slice), as the segmentation needs."""
    return all(int(ds.get("NumberOfFrames", 1) or 1) == 1 for ds in headers)
