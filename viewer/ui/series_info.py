"""What the image view needs to know about a stack, taken from its headers (no Qt, no pixels).

The view can lay out, annotate and map the cursor to patient space before a single slice is decoded, and the
numbers match the loaded volume because both come from the same headers. Positions are per slice, so a
gantry-tilted stack maps each pixel to its true place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from viewer.dicom.geometry import normal_from_orientation
from viewer.dicom.headers import InstanceHeader
from viewer.dicom.identifiers import SeriesIdentifiers, display_date, display_name, display_time
from viewer.dicom.stacks import Stack
from viewer.dicom.volume import Volume

UNITS = {"CT": "HU", "PT": "SUV", "NM": "counts"}


@dataclass(slots=True)
class SeriesDisplay:
    """Geometry and labels of one stack, as the image view shows them."""

    stack_uid: str
    series_uid: str
    study_uid: str
    n_slices: int
    rows: int
    columns: int
    is_colour: bool = False
    pixel_spacing: tuple[float, float] = (1.0, 1.0)  # (row spacing dy, column spacing dx), mm
    spacing_known: bool = False
    orientation: tuple[float, ...] | None = None
    positions: np.ndarray | None = None  # (n, 3) ImagePositionPatient per slice, LPS mm
    distances: np.ndarray | None = None  # (n,) position along the slice normal, mm
    slice_thickness: float | None = None
    modality: str = ""
    units: str = ""
    default_window: tuple[float, float] | None = None
    invert: bool = False
    patient_name: str = ""
    patient_id: str = ""
    patient_sex: str = ""
    patient_birth_date: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    series_number: int | None = None
    series_description: str = ""
    label: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def series_title(self) -> str:
        """``#number description``, or "Series" when both are missing."""
        number = f"#{self.series_number} " if self.series_number is not None else ""
        text = f"{number}{self.series_description}".strip() or "Series"
        return text

    def slice_position(self, k: int) -> float | None:
        """Position of slice ``k`` along the normal (mm), as viewers show "slice location"."""
        if self.distances is None or not 0 <= k < len(self.distances):
            return None
        return float(self.distances[k])

    def voxel_to_patient(self, k: int, j: float, i: float) -> np.ndarray | None:
        """Patient (LPS, mm) position of row ``j``, column ``i`` of slice ``k``; None without geometry."""
        if self.orientation is None or self.positions is None or not 0 <= k < len(self.positions):
            return None
        row = np.asarray(self.orientation[:3], float)
        col = np.asarray(self.orientation[3:6], float)
        dy, dx = self.pixel_spacing
        return self.positions[k] + row * (i * dx) + col * (j * dy)

    def normal(self) -> np.ndarray | None:
        """Unit slice normal, or None without an orientation."""
        if self.orientation is None:
            return None
        return normal_from_orientation(self.orientation)


def _header_window(first: InstanceHeader) -> tuple[float, float] | None:
    c, w = first.window_center, first.window_width
    if c is None or w is None or w <= 0:
        return None
    return float(c), float(w)


def series_display_from_stack(stack: Stack) -> SeriesDisplay:
    """Build a :class:`SeriesDisplay` from a :class:`viewer.dicom.stacks.Stack` (headers only)."""
    first = stack.first
    geos = [s.geometry for s in stack.slices]
    spacing = next((g.pixel_spacing for g in geos if g.pixel_spacing), None)
    positions = None
    if all(g.position is not None for g in geos) and geos:
        positions = np.array([g.position for g in geos], dtype=float)
    distances = stack.distances
    if distances is None and positions is not None and stack.orientation is not None:
        distances = positions @ normal_from_orientation(stack.orientation)
    thickness = next((g.slice_thickness for g in geos if g.slice_thickness), None)
    modality = stack.modality
    warnings = [w.message for w in stack.warnings]
    ids = SeriesIdentifiers.from_header(first)
    return SeriesDisplay(
        stack_uid=stack.uid,
        series_uid=stack.series_uid,
        study_uid=first.study_instance_uid,
        n_slices=stack.n_slices,
        rows=stack.rows,
        columns=stack.columns,
        is_colour=bool(stack.is_colour),
        pixel_spacing=(float(spacing[0]), float(spacing[1])) if spacing else (1.0, 1.0),
        spacing_known=spacing is not None,
        orientation=tuple(stack.orientation) if stack.orientation is not None else None,
        positions=positions,
        distances=np.asarray(distances, dtype=float) if distances is not None else None,
        slice_thickness=float(thickness) if thickness else None,
        modality=modality,
        units=UNITS.get(modality, ""),
        default_window=_header_window(first),
        invert=first.photometric_interpretation == "MONOCHROME1",
        patient_name=display_name(ids.patient_name),
        patient_id=ids.patient_id,
        patient_sex=ids.patient_sex,
        patient_birth_date=display_date(ids.patient_birth_date),
        study_date=display_date(ids.study_date),
        study_time=display_time(ids.study_time),
        study_description=ids.study_description,
        accession_number=ids.accession_number,
        series_number=first.series_number,
        series_description=ids.series_description,
        label=stack.label,
        warnings=warnings,
    )


def update_from_volume(display: SeriesDisplay, volume: Volume) -> None:
    """Take what the loaded volume knows: its slices (a damaged slice may have been skipped), their true
    positions, units, default window and inversion."""
    display.n_slices = volume.n_slices
    positions = volume.positions
    if positions is not None and len(positions) == display.n_slices and display.orientation is not None:
        display.positions = np.asarray(positions, dtype=float)
        display.distances = display.positions @ normal_from_orientation(display.orientation)
    elif display.positions is not None and len(display.positions) != display.n_slices:
        display.positions = None
        display.distances = None
    if volume.units:
        display.units = volume.units
    if display.default_window is None:
        c, w = float(volume.window[0]), float(volume.window[1])
        if w > 0:
            display.default_window = (c, w)
    display.invert = bool(volume.invert)
    if volume.slice_thickness and not display.slice_thickness:
        display.slice_thickness = float(volume.slice_thickness)
    for text in volume.warnings:
        if text not in display.warnings:
            display.warnings.append(text)
