"""Key images as DICOM Secondary Capture: each key slice with the saliency overlay, as the report prints it.

A PACS viewer that knows nothing of GRU Viewer still shows these. Each image is one RGB instance in a new
series of the source study, rendered by :func:`viewer.report.images.render_key_image` (square pixels, brain
window, the overlay at the report's opacity), with its pixel spacing and patient orientation, and the burned-in
overlay declared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from viewer import __version__
from viewer.dicom.stacks import orientation_letters
from viewer.report.images import KeyImage

SERIES_DESCRIPTION = "GRU Viewer key images"
MANUFACTURER = "GRU Viewer"


def key_image_captures(
    volume: Any,
    images: Sequence[KeyImage],
    key_headers: Sequence[Dataset],
    *,
    series_number: int,
    series_uid: str | None = None,
) -> list[hd.sc.SCImage]:
    """One Secondary Capture per key image (the overlay where the slice has a map, else the plain slice), in the
    study of ``key_headers`` (the same slices' own headers, in the same order)."""
    if len(images) != len(key_headers):
        raise ValueError(f"{len(images)} key images but {len(key_headers)} source headers")
    series_uid = series_uid or generate_uid()
    letters = orientation_letters(volume.orientation)
    orientation = (letters["right"], letters["bottom"])
    captures = []
    for number, (image, header) in enumerate(zip(images, key_headers, strict=True), start=1):
        rgb = image.overlay if image.overlay is not None else np.repeat(image.plain[..., None], 3, axis=-1)
        height, width = rgb.shape[:2]
        spacing = (image.extent_mm[1] / height, image.extent_mm[0] / width)
        capture = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=header,
            pixel_array=np.ascontiguousarray(rgb, dtype=np.uint8),
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=generate_uid(),
            instance_number=number,
            manufacturer=MANUFACTURER,
            pixel_spacing=spacing,
            patient_orientation=orientation,
        )
        capture.SeriesDescription = SERIES_DESCRIPTION
        capture.SoftwareVersions = __version__
        capture.BurnedInAnnotation = "NO"
        # Laterality (Type 2C) is decided by the body part: a head is unpaired, so it stays absent.
        capture.BodyPartExamined = str(header.get("BodyPartExamined", "") or "HEAD")
        capture.ImageComments = f"Slice {image.index + 1} with the GRU pixel saliency overlay"
        captures.append(capture)
    return captures
