"""The reader's measurements in the structured report: one TID 1410 planar ROI measurement group each, and the
same read back.

Every measurement's region is a 3-D spatial coordinate (SCOORD3D, patient LPS mm in the series' frame of
reference), so a measurement on a coronal or sagittal reformat, which no stored image holds, is still placed
exactly: a line is a two-point POLYLINE, an angle a three-point one, a probe a POINT, a rectangle or polygon a
closed POLYGON and an ellipse an ELLIPSE (its two axes' end points). The values are TID 300 measurements with
UCUM units: Length (mm), Angle (deg), Area (mm²) and the attenuation (HU) with its derivation (mean, standard
deviation, minimum, maximum; a probe's value has none). A measurement on an acquired slice also cites that
slice's image from each value.

The tool is kept in the tracking identifier (``"measurement 3: ellipse"``), since a region's graphic type
does not tell a rectangle from a polygon, and so is the slab of a measurement made on a thick slab
(``"measurement 4: probe on MIP 10 mm"``): its values are the slab's, not the plane's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import highdicom as hd
import numpy as np
from highdicom.sr.coding import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from viewer.dicom.reformat.annotations import ACQUIRED, Measurement, Tool, plane_grid
from viewer.dicom.reformat.planes import PlaneGrid
from viewer.dicom.reformat.reformatter import Reformatter
from viewer.report.dicom_sources import source_headers

#: The tracking identifier's text before the measurement's number.
TRACKING_PREFIX = "measurement "
#: Between the tool and the slab in the tracking identifier.
SLAB_SEPARATOR = " on "
ATTENUATION = codes.DCM.AttenuationCoefficient
LENGTH = codes.SCT.Length
ANGLE = codes.SCT.Angle
AREA = codes.SCT.Area
MM = codes.UCUM.Millimeter
MM2 = codes.UCUM.SquareMillimeter
DEGREE = codes.UCUM.Degree
HU = codes.UCUM.HounsfieldUnit
#: The ROI statistics' derivations (CID 7464) and their field in RoiStats.
DERIVATIONS: dict[str, Code] = {
    "mean": codes.SCT.Mean,
    "sd": codes.SCT.StandardDeviation,
    "minimum": codes.SCT.Minimum,
    "maximum": codes.SCT.Maximum,
}
_G = hd.sr.GraphicTypeValues3D


def unit_code(units: str) -> Code:
    """The UCUM code of a value's units ("HU", or another UCUM unit; none: ``1``)."""
    if units == "HU":
        return HU
    if not units:
        return codes.UCUM.NoUnits
    return Code(units, "UCUM", units)


def region_points(m: Measurement, grid: PlaneGrid) -> tuple[hd.sr.GraphicTypeValues3D, np.ndarray]:
    """The SCOORD3D graphic type and points (n × 3, patient mm) of ``m``'s region on its plane ``grid``."""
    points = np.asarray(m.points, dtype=np.float64)
    if m.tool == Tool.PROBE:
        return _G.POINT, points[:1]
    if m.tool in (Tool.LINE, Tool.ANGLE):
        return _G.POLYLINE, points
    if m.tool == Tool.POLYGON:
        return _G.POLYGON, np.vstack([points, points[:1]])
    (r0, c0), (r1, c1) = (grid.pixel_of(p) for p in points[:2])
    if m.tool == Tool.RECTANGLE:
        corners = [(r0, c0), (r0, c1), (r1, c1), (r1, c0), (r0, c0)]
        return _G.POLYGON, np.array([grid.patient_of(r, c) for r, c in corners])
    rc, cc = (r0 + r1) / 2, (c0 + c1) / 2
    across = [(rc, c0), (rc, c1)]  # the axis along the rows' direction
    down = [(r0, cc), (r1, cc)]
    width, height = abs(c1 - c0) * grid.dx, abs(r1 - r0) * grid.dy
    ends = across + down if width >= height else down + across  # the major axis first
    return _G.ELLIPSE, np.array([grid.patient_of(r, c) for r, c in ends])


def _values(m: Measurement) -> list[tuple[Code, float, Code, Code | None]]:
    """(name, value, unit, derivation) of each finite value of ``m``."""
    v, unit = m.values, unit_code(m.values.units)
    rows: list[tuple[Code, float, Code, Code | None]] = []
    if m.tool == Tool.LINE and v.length_mm is not None:
        rows.append((LENGTH, v.length_mm, MM, None))
    elif m.tool == Tool.ANGLE and v.angle_deg is not None:
        rows.append((ANGLE, v.angle_deg, DEGREE, None))
    elif m.tool == Tool.PROBE and v.value is not None:
        rows.append((ATTENUATION, v.value, unit, None))
    elif v.stats is not None:
        for key, derivation in DERIVATIONS.items():
            rows.append((ATTENUATION, float(getattr(v.stats, key)), unit, derivation))
        rows.append((AREA, v.stats.area_mm2, MM2, None))
    return [row for row in rows if math.isfinite(row[1])]


def tracking_text(m: Measurement) -> str:
    """``measurement 3: ellipse`` (and ``on MIP 10 mm`` for a measurement on a thick slab)."""
    slab = f"{SLAB_SEPARATOR}{m.plane.slab.label()}" if m.plane.slab is not None else ""
    return f"{TRACKING_PREFIX}{m.id}: {m.tool.value}{slab}"


def measurement_groups(
    measurements: Sequence[Measurement],
    grid_of: Callable[[Measurement], PlaneGrid],
    frame_of_reference_uid: str,
    source_image: Callable[[Measurement], hd.sr.SourceImageForMeasurement | None],
) -> list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations]:
    """A TID 1410 group per measurement: ``grid_of`` gives its plane's grid, ``source_image`` the acquired
    slice it was made on (None on a reformat)."""
    groups = []
    for m in measurements:
        graphic, points = region_points(m, grid_of(m))
        region = hd.sr.ImageRegion3D(
            graphic_type=graphic, graphic_data=points, frame_of_reference_uid=frame_of_reference_uid
        )
        source = source_image(m)
        cited = [source] if source is not None else None
        values = [
            hd.sr.Measurement(name=n, value=float(x), unit=u, derivation=d, referenced_images=cited)
            for n, x, u, d in _values(m)
        ]
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=tracking_text(m)),
                referenced_region=region,
                measurements=values,
            )
        )
    return groups


@dataclass(frozen=True)
class SRMeasurement:
    """One measurement as a structured report holds it: its number and tool, region (graphic type and patient
    points), values by name (``"length"``, ``"angle"``, ``"area"``, ``"value"``, ``"mean"``, ``"sd"``,
    ``"minimum"``, ``"maximum"``) with their UCUM units, the images it cites and the slab it was made on
    (``"MIP 10 mm"``; empty on a thin plane)."""

    number: int
    tool: Tool
    graphic_type: str
    points: np.ndarray
    values: dict[str, float]
    units: dict[str, str]
    source_sop_uids: tuple[str, ...]
    slab: str = ""


_NAMES = {LENGTH: "length", ANGLE: "angle", AREA: "area"}


def _value_name(name: CodedConcept, derivation: CodedConcept | None) -> str:
    if name == ATTENUATION:
        if derivation is None:
            return "value"
        return next((k for k, code in DERIVATIONS.items() if derivation == code), str(derivation.meaning))
    return next((k for code, k in _NAMES.items() if name == code), str(name.meaning))


def read_measurements(report: hd.sr.MeasurementReport) -> list[SRMeasurement]:
    """The measurements :func:`measurement_groups` wrote into ``report`` (groups of other tracking identifiers
    are skipped)."""
    out = []
    for group in report.get_planar_roi_measurement_groups():
        text = str(group.tracking_identifier or "")
        if not text.startswith(TRACKING_PREFIX) or ": " not in text:
            continue
        number, rest = text.removeprefix(TRACKING_PREFIX).split(": ", 1)
        tool, _, slab = rest.partition(SLAB_SEPARATOR)
        region = group.roi
        values: dict[str, float] = {}
        units: dict[str, str] = {}
        cited: list[str] = []
        for item in group.get_measurements():
            key = _value_name(item.name, item.derivation)
            values[key] = float(item.value)
            units[key] = str(item.unit.value)
            cited += [str(s.referenced_sop_instance_uid) for s in item.referenced_images]
        out.append(
            SRMeasurement(
                number=int(number),
                tool=Tool(tool),
                graphic_type=str(region.graphic_type.value) if region is not None else "",
                points=np.asarray(region.value, dtype=np.float64) if region is not None else np.empty((0, 3)),
                values=values,
                units=units,
                source_sop_uids=tuple(dict.fromkeys(cited)),
                slab=slab,
            )
        )
    return out


def volume_measurement_groups(
    volume: Any, measurements: Sequence[Measurement], frame_of_reference_uid: str
) -> tuple[list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations], list[Dataset]]:
    """The groups of ``measurements`` on ``volume`` and the headers of the acquired slices they cite (the SR's
    evidence must list them)."""
    reformat = Reformatter.of(volume)
    acquired = sorted({int(m.plane.slice_index or 0) for m in measurements if m.plane.name == ACQUIRED})
    headers = dict(zip(acquired, source_headers(volume, acquired), strict=True))
    sources = list(getattr(volume, "sources", []) or [])

    def source_image(m: Measurement) -> hd.sr.SourceImageForMeasurement | None:
        if m.plane.name != ACQUIRED:
            return None
        k = int(m.plane.slice_index or 0)
        ds = headers[k]
        frames = [int(sources[k][1]) + 1] if int(ds.get("NumberOfFrames", 1) or 1) > 1 else None
        return hd.sr.SourceImageForMeasurement.from_source_image(ds, referenced_frame_numbers=frames)

    groups = measurement_groups(
        measurements, lambda m: plane_grid(reformat, m.plane), frame_of_reference_uid, source_image
    )
    unique = list({ds.SOPInstanceUID: ds for ds in headers.values()}.values())
    return groups, unique
