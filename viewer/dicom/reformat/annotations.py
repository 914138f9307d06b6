"""Measurements as plain data (Qt-free): their points in patient coordinates, their plane and their values.

A measurement is drawn on one plane: an acquired slice (the 1 × 1 view) or an axial, coronal or sagittal
reformat. :class:`PlaneRef` says which, so a report can rebuild the plane headless (:func:`plane_grid`,
:func:`plane_data`). Points are kept in patient coordinates (LPS mm), so the same measurement shows on any pane
that displays its plane, whatever that pane's pixel grid, and its values come from
:mod:`viewer.dicom.reformat.measure` on the plane's own pixels.

:class:`MeasurementSet` holds one series' measurements with an undo history (add, change, delete);
:class:`MeasurementStore` keeps a set per series for the session.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

from viewer.dicom.geometry import direction_letters
from viewer.dicom.reformat.frame import SliceFrame
from viewer.dicom.reformat.measure import (
    RoiStats,
    angle_deg,
    distance_mm,
    ellipse_stats,
    polygon_stats,
    rectangle_stats,
)
from viewer.dicom.reformat.planes import PlaneAxes, PlaneGrid, PlaneKind
from viewer.dicom.reformat.reformatter import Reformatter
from viewer.dicom.reformat.slab import Slab

#: The plane name of an acquired slice (as the 1 × 1 view shows it).
ACQUIRED = "acquired"
#: How far (mm) a point may lie off a plane and still be drawn on it.
ON_PLANE_MM = 0.01
#: Parallel planes: |cos| of their normals at least this.
PARALLEL = 1.0 - 1e-6


class Tool(StrEnum):
    """The measurement tools."""

    LINE = "line"
    ANGLE = "angle"
    RECTANGLE = "rectangle"
    ELLIPSE = "ellipse"
    POLYGON = "polygon"
    PROBE = "probe"


TOOL_NAMES: dict[Tool, str] = {
    Tool.LINE: "Line",
    Tool.ANGLE: "Angle",
    Tool.RECTANGLE: "Rectangle ROI",
    Tool.ELLIPSE: "Ellipse ROI",
    Tool.POLYGON: "Polygon ROI",
    Tool.PROBE: "HU probe",
}

#: Points a finished measurement of each tool has (a polygon: at least three).
POINT_COUNT: dict[Tool, int] = {
    Tool.LINE: 2,
    Tool.ANGLE: 3,
    Tool.RECTANGLE: 2,
    Tool.ELLIPSE: 2,
    Tool.POLYGON: 3,
    Tool.PROBE: 1,
}


@dataclass(frozen=True, slots=True)
class PlaneRef:
    """The plane a measurement lies on: ``name`` (:data:`ACQUIRED` or a :class:`PlaneKind` value), its position
    ``depth`` (mm along its normal), ``normal`` (patient unit vector), for an acquired slice its index and, for a
    reformat shown as a thick slab (MIP, MinIP, average), that ``slab``: its values were read from the slab, so
    the report redraws the same slab."""

    name: str
    depth: float
    normal: tuple[float, float, float]
    slice_index: int | None = None
    slab: Slab | None = None

    def title(self) -> str:
        """How the plane is named in lists and the report ("Slice 12", "Coronal A 34.5 mm · MIP 10 mm")."""
        if self.name == ACQUIRED:
            return f"Slice {(self.slice_index or 0) + 1}"
        w = np.asarray(self.normal, dtype=np.float64)
        letter = direction_letters(w if self.depth >= 0 else -w, max_letters=1)
        slab = f" · {self.slab.label()}" if self.slab is not None else ""
        return f"{self.name.capitalize()} {letter} {abs(self.depth):.1f} mm{slab}"

    def same_plane(self, other: PlaneRef) -> bool:
        """Whether both name the same plane in the patient."""
        cos = abs(float(np.dot(self.normal, other.normal)))
        sign = 1.0 if float(np.dot(self.normal, other.normal)) >= 0 else -1.0
        return cos >= PARALLEL and abs(self.depth - sign * other.depth) <= ON_PLANE_MM


def nearest_kind(normal: np.ndarray) -> PlaneKind:
    """The named plane whose normal is nearest ``normal``."""
    return max(PlaneKind, key=lambda k: abs(float(PlaneAxes.of(k).w @ normal)))


def acquired_grid(frame: SliceFrame, k: int) -> PlaneGrid:
    """The pixel grid of acquired slice ``k`` itself: row ``j``, column ``i`` are the slice's own pixels."""
    u, v = frame.row, frame.col
    w = np.cross(u, v)
    axes = PlaneAxes(nearest_kind(w), u, v, w)
    origin = frame.positions[int(k)]
    return PlaneGrid(
        axes,
        float(origin @ w),
        float(origin @ u),
        float(origin @ v),
        frame.dx,
        frame.dy,
        frame.cols,
        frame.rows,
    )


def plane_ref(
    grid: PlaneGrid, name: str, slice_index: int | None = None, slab: Slab | None = None
) -> PlaneRef:
    """The :class:`PlaneRef` of a grid shown under ``name`` (as ``slab`` when it is a thick slab)."""
    thick = slab if slab is not None and slab.thickness > 0 and name != ACQUIRED else None
    normal = tuple(float(c) for c in grid.axes.w)
    return PlaneRef(name, float(grid.depth), normal, slice_index, thick)  # type: ignore[arg-type]


def plane_grid(reformat: Reformatter, ref: PlaneRef) -> PlaneGrid:
    """The grid of the plane ``ref`` names."""
    if ref.name == ACQUIRED:
        return acquired_grid(reformat.frame, int(ref.slice_index or 0))
    return reformat.grid(PlaneKind(ref.name), ref.depth)


def plane_data(reformat: Reformatter, array: np.ndarray, ref: PlaneRef) -> np.ndarray:
    """The plane's values (float32; NaN where no slice lies): an acquired slice as stored, a reformat sampled
    (as its slab, when it has one)."""
    if ref.name == ACQUIRED:
        return np.asarray(array[int(ref.slice_index or 0)], dtype=np.float32)
    return reformat.plane(array, PlaneKind(ref.name), ref.depth, slab=ref.slab).data


@dataclass(frozen=True, slots=True)
class Values:
    """What a measurement reads: a length (mm), an angle (degrees), ROI statistics or a point's value."""

    length_mm: float | None = None
    angle_deg: float | None = None
    stats: RoiStats | None = None
    value: float | None = None
    units: str = "HU"


def _number(v: float, units: str) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.0f} {units}".strip()


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measurement: ``points`` (patient LPS mm) on ``plane``, with its ``values``; ``id`` is unique per set."""

    id: int
    tool: Tool
    plane: PlaneRef
    points: tuple[tuple[float, float, float], ...]
    values: Values = field(default_factory=Values)

    def value_text(self) -> str:
        """The values on one line (the measurements list and the report's table)."""
        v = self.values
        if self.tool == Tool.LINE and v.length_mm is not None:
            return f"{v.length_mm:.1f} mm"
        if self.tool == Tool.ANGLE and v.angle_deg is not None:
            return f"{v.angle_deg:.1f}°"
        if self.tool == Tool.PROBE:
            return _number(v.value if v.value is not None else float("nan"), v.units)
        s = v.stats
        if s is None:
            return "—"
        if s.pixels == 0:
            return f"no pixels inside · area {s.area_mm2:.1f} mm²"
        return (
            f"mean {_number(s.mean, v.units)} · SD {s.sd:.1f} · min {_number(s.minimum, '')} · "
            f"max {_number(s.maximum, '')} · area {s.area_mm2:.1f} mm²"
        )

    def label_lines(self) -> list[str]:
        """The label drawn beside the measurement (a few short lines)."""
        v, s = self.values, self.values.stats
        if s is None or self.tool in (Tool.LINE, Tool.ANGLE, Tool.PROBE):
            return [self.value_text()]
        if s.pixels == 0:
            return [f"area {s.area_mm2:.1f} mm²", "no pixels inside"]
        return [
            f"mean {_number(s.mean, v.units)}  SD {s.sd:.1f}",
            f"min {_number(s.minimum, '')}  max {_number(s.maximum, '')}",
            f"area {s.area_mm2:.1f} mm²",
        ]

    def on_plane(self, ref: PlaneRef) -> bool:
        """Whether this measurement lies on plane ``ref`` (its own plane, or the same plane in another pane)."""
        return self.plane.same_plane(ref)


def outline(tool: Tool, points: Sequence[tuple[float, float]]) -> tuple[list[tuple[float, float]], bool]:
    """The polyline that draws a shape through ``points`` (x, y on any unrotated screen or pixel grid) and
    whether it is closed: a rectangle's four corners, an ellipse as 48 segments, the points of the others."""
    pts = [(float(x), float(y)) for x, y in points]
    if tool in (Tool.RECTANGLE, Tool.ELLIPSE) and len(pts) >= 2:
        (ax, ay), (bx, by) = pts[0], pts[1]
        if tool == Tool.RECTANGLE:
            return [(ax, ay), (bx, ay), (bx, by), (ax, by)], True
        cx, cy, rx, ry = (ax + bx) / 2, (ay + by) / 2, abs(ax - bx) / 2, abs(ay - by) / 2
        steps = np.linspace(0.0, 2 * math.pi, 48, endpoint=False)
        return [(cx + rx * math.cos(t), cy + ry * math.sin(t)) for t in steps], True
    return pts, tool == Tool.POLYGON


def evaluate(
    tool: Tool, grid: PlaneGrid, data: np.ndarray, points: Sequence[np.ndarray], units: str = "HU"
) -> Values:
    """The values of a measurement with ``points`` (patient) on the plane ``grid`` whose values are ``data``."""
    pixels = [grid.pixel_of(np.asarray(p, dtype=np.float64)) for p in points]
    if len(pixels) < POINT_COUNT[Tool(tool)]:
        raise ValueError(f"a {tool} needs at least {POINT_COUNT[Tool(tool)]} points")
    if tool == Tool.LINE:
        return Values(length_mm=distance_mm(grid, pixels[0], pixels[1]), units=units)
    if tool == Tool.ANGLE:
        return Values(angle_deg=angle_deg(grid, pixels[0], pixels[1], pixels[2]), units=units)
    if tool == Tool.PROBE:
        r, c = (int(round(x)) for x in pixels[0])
        inside = 0 <= r < data.shape[0] and 0 <= c < data.shape[1]
        value = float(data[r, c]) if inside else float("nan")
        return Values(value=None if math.isnan(value) else value, units=units)
    if tool == Tool.RECTANGLE:
        return Values(stats=rectangle_stats(data, grid, pixels[0], pixels[1]), units=units)
    if tool == Tool.ELLIPSE:
        return Values(stats=ellipse_stats(data, grid, pixels[0], pixels[1]), units=units)
    return Values(stats=polygon_stats(data, grid, pixels), units=units)


def make_measurement(
    tool: Tool,
    ref: PlaneRef,
    grid: PlaneGrid,
    data: np.ndarray,
    points: Sequence[np.ndarray],
    units: str = "HU",
    ident: int = 0,
) -> Measurement:
    """A measurement of ``tool`` through ``points`` (patient) on the plane ``grid`` (values from ``data``)."""
    tool = Tool(tool)
    values = evaluate(tool, grid, data, points, units)
    kept = tuple(tuple(float(c) for c in np.asarray(p, dtype=np.float64)) for p in points)
    return Measurement(ident, tool, ref, kept, values)  # type: ignore[arg-type]


def moved(
    m: Measurement,
    points: Sequence[np.ndarray],
    grid: PlaneGrid,
    data: np.ndarray,
    ref: PlaneRef | None = None,
) -> Measurement:
    """``m`` with new points on the same plane, its values measured again from ``data``; ``ref`` is that plane
    as the pane showing ``data`` names it (a pane showing it as a slab: the values are the slab's, and so is the
    plane kept). The same thin plane under another name (an acquired slice on an axial reformat) keeps its own."""
    keep = ref is None or (ref.name != m.plane.name and ref.slab is None)
    plane = m.plane if keep or ref is None else ref
    return make_measurement(m.tool, plane, grid, data, points, m.values.units, m.id)


class MeasurementSet:
    """One series' measurements, in the order made, with undo of every change."""

    def __init__(self) -> None:
        self._items: list[Measurement] = []
        self._history: list[list[Measurement]] = []
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):  # noqa: ANN204 (an iterator of Measurement)
        return iter(list(self._items))

    @property
    def items(self) -> list[Measurement]:
        """The measurements (a copy of the list)."""
        return list(self._items)

    def get(self, ident: int) -> Measurement | None:
        """The measurement with ``ident``, or None."""
        return next((m for m in self._items if m.id == ident), None)

    def on_plane(self, ref: PlaneRef) -> list[Measurement]:
        """The measurements that lie on plane ``ref``."""
        return [m for m in self._items if m.on_plane(ref)]

    def add(self, m: Measurement) -> Measurement:
        """Keep ``m`` under a new id; returns it with that id."""
        self._remember()
        m = replace(m, id=self._next_id)
        self._next_id += 1
        self._items.append(m)
        return m

    def update(self, m: Measurement) -> None:
        """Replace the measurement with ``m.id`` (moved, resized)."""
        index = next((i for i, old in enumerate(self._items) if old.id == m.id), None)
        if index is None:
            raise KeyError(m.id)
        self._remember()
        self._items[index] = m

    def remove(self, ident: int) -> bool:
        """Delete the measurement with ``ident``; False when there is none."""
        if self.get(ident) is None:
            return False
        self._remember()
        self._items = [m for m in self._items if m.id != ident]
        return True

    def clear(self) -> None:
        """Delete all (undoable)."""
        if self._items:
            self._remember()
            self._items = []

    @property
    def can_undo(self) -> bool:
        """Whether there is a change to undo."""
        return bool(self._history)

    def undo(self) -> bool:
        """Take back the last change; False when there is none."""
        if not self._history:
            return False
        self._items = self._history.pop()
        return True

    def _remember(self) -> None:
        self._history.append(list(self._items))


class MeasurementStore:
    """A :class:`MeasurementSet` per series (stack uid), kept for the session."""

    def __init__(self) -> None:
        self._sets: dict[str, MeasurementSet] = {}

    def of(self, uid: str) -> MeasurementSet:
        """The set of series ``uid`` (made empty on first use)."""
        return self._sets.setdefault(uid, MeasurementSet())

    def __contains__(self, uid: object) -> bool:
        return uid in self._sets
