"""The pixel saliency as a DICOM Segmentation aligned to the source slices (binary, at the overlay threshold).

The map exists for the slices the analysis explained (the key slices, and any the reader opened), each at the
slice's own pixel grid, so the segmentation references those source images one frame each and shares their frame
of reference: a PACS viewer draws it over the CT where the viewer drew the overlay. The region is where the map,
scaled as the overlay scales it (:func:`viewer.analysis.display.to_display_map`), reaches ``threshold``. The
segment is typed DCM "Saliency" and made by an automatic algorithm (the model, with its version); it marks
where the evidence is, not a bleed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from viewer import __version__
from viewer.analysis.display import slice_weight, to_display_map

SERIES_DESCRIPTION = "GRU Viewer saliency (SEG)"
MANUFACTURER = "GRU Viewer"
#: The viewer's default overlay threshold: the segmented region is what the overlay shows by default.
DEFAULT_THRESHOLD = 0.30


def saliency_segmentation(
    result: Any,
    maps: dict[int, np.ndarray],
    headers: Sequence[Dataset],
    *,
    series_number: int,
    threshold: float = DEFAULT_THRESHOLD,
    scaling: str = "series",
    series_uid: str | None = None,
) -> hd.seg.Segmentation:
    """A binary segmentation of ``maps`` (original slice index → signed pixel saliency, as the analysis gives
    them) over the slices whose headers ``headers`` are, in ``sorted(maps)`` order."""
    indices = sorted(maps)
    if not indices:
        raise ValueError("no slice has a pixel saliency map")
    if len(headers) != len(indices):
        raise ValueError(f"{len(indices)} maps but {len(headers)} source headers")
    frames = np.stack(
        [
            to_display_map(maps[k], slice_weight(result.slice_probabilities, k, scaling)) >= threshold
            for k in indices
        ]
    )
    algorithm = hd.AlgorithmIdentificationSequence(
        name=result.model.name,
        family=codes.DCM.ArtificialIntelligence,
        version=result.model.version,
        parameters={"weights sha256": result.model.sha256, "threshold": f"{threshold:g}", "scaling": scaling},
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=f"GRU saliency >= {threshold:g}",
        segmented_property_category=codes.SCT.SpatialAndRelationalConcept,
        segmented_property_type=codes.DCM.Saliency,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    seg = hd.seg.Segmentation(
        source_images=list(headers),
        pixel_array=frames[..., None].astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=series_uid or generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=result.model.name,
        software_versions=__version__,
        device_serial_number="0",
        content_description="Pixel saliency of the GRU Viewer analysis",
        content_label="SALIENCY",
        omit_empty_frames=False,
    )
    seg.SeriesDescription = SERIES_DESCRIPTION
    return seg
