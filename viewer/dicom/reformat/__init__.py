"""Multiplanar reformats in true patient geometry (Qt-free): planes, sampling, slabs, slice bands.

Entry point: :class:`~viewer.dicom.reformat.reformatter.Reformatter` (``Reformatter.of(volume)``).
"""

from viewer.dicom.reformat.bands import SliceBands, slice_bands
from viewer.dicom.reformat.frame import SliceFrame
from viewer.dicom.reformat.planes import PlaneAxes, PlaneGrid, PlaneKind, PlaneLayout
from viewer.dicom.reformat.reformatter import PlaneImage, Reformatter
from viewer.dicom.reformat.sampler import SamplingPlan, plan_plane
from viewer.dicom.reformat.slab import Slab, SlabMode

__all__ = [
    "PlaneAxes",
    "PlaneGrid",
    "PlaneImage",
    "PlaneKind",
    "PlaneLayout",
    "Reformatter",
    "SamplingPlan",
    "Slab",
    "SlabMode",
    "SliceBands",
    "SliceFrame",
    "plan_plane",
    "slice_bands",
]
