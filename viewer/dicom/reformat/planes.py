"""The three patient planes and their pixel grids: which way is right and down on screen, and in mm.

Screen axes follow the radiological convention on LPS patient coordinates: the patient's left is on the right of
an axial and a coronal image, anterior is up on an axial image, superior is up on coronal and sagittal ones, and
anterior is on the left of a sagittal one. A plane's view coordinates are plain projections of the patient point
on its screen axes, ``x = p·u`` and ``y = p·v`` (mm), and its depth is ``p·w`` with ``w = u × v``: a point has the
same coordinates in every pane that shows it, which is what links the crosshair.

Pixel grids sit on the acquired voxel grid where they can: a screen axis along the slices' rows or columns steps
by that pixel spacing from slice 0's pixel centres, so an axial stack's coronal and sagittal images are its own
pixels, not resampled ones, across each row. A plane parallel to the slices takes the nearest slice's own grid, so
it is that slice, exactly, shifted where a gantry tilt shears the stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from viewer.dicom.geometry import direction_letters
from viewer.dicom.reformat.frame import SliceFrame

#: Largest output image side in pixels; bigger planes get coarser pixels.
MAX_SIDE = 2048
#: |cos| above which an axis counts as along another one.
ALIGNED = 1.0 - 1e-6


class PlaneKind(StrEnum):
    """The three patient planes."""

    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"


_SCREEN_AXES: dict[PlaneKind, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    PlaneKind.AXIAL: ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),  # right = L, down = P
    PlaneKind.CORONAL: ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),  # right = L, down = I
    PlaneKind.SAGITTAL: ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),  # right = P, down = I
}


@dataclass(frozen=True, slots=True)
class PlaneAxes:
    """A plane's screen axes in patient coordinates: ``u`` points right, ``v`` down, ``w = u × v`` is its depth."""

    kind: PlaneKind
    u: np.ndarray
    v: np.ndarray
    w: np.ndarray

    @classmethod
    def of(cls, kind: PlaneKind) -> PlaneAxes:
        """The screen axes of ``kind``."""
        u, v = (np.asarray(a, dtype=np.float64) for a in _SCREEN_AXES[PlaneKind(kind)])
        return cls(PlaneKind(kind), u, v, np.cross(u, v))

    def to_view(self, point: np.ndarray) -> tuple[float, float, float]:
        """(x, y, depth) in mm of a patient point."""
        p = np.asarray(point, dtype=np.float64)
        return float(p @ self.u), float(p @ self.v), float(p @ self.w)

    def from_view(self, x: float, y: float, depth: float) -> np.ndarray:
        """The patient point at view (x, y) on the plane at ``depth``."""
        return self.u * x + self.v * y + self.w * depth

    def edge_letters(self) -> dict[str, str]:
        """Orientation letters of the four edges ("left", "right", "top", "bottom")."""
        return {
            "left": direction_letters(-self.u),
            "right": direction_letters(self.u),
            "top": direction_letters(-self.v),
            "bottom": direction_letters(self.v),
        }


@dataclass(frozen=True, slots=True)
class PlaneGrid:
    """The pixel grid of one plane image: pixel (row, col)'s centre is at view ``(x0 + col·dx, y0 + row·dy)``."""

    axes: PlaneAxes
    depth: float
    x0: float
    y0: float
    dx: float
    dy: float
    width: int
    height: int

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        return self.height, self.width

    def rect(self) -> tuple[float, float, float, float]:
        """(left, top, width, height) in view mm of the pixel edges: where the image is drawn."""
        return (
            self.x0 - self.dx / 2.0,
            self.y0 - self.dy / 2.0,
            self.width * self.dx,
            self.height * self.dy,
        )

    def pixel_of(self, point: np.ndarray) -> tuple[float, float]:
        """Fractional (row, col) of a patient point's projection on this plane."""
        x, y, _ = self.axes.to_view(point)
        return (y - self.y0) / self.dy, (x - self.x0) / self.dx

    def patient_of(self, row: float, col: float) -> np.ndarray:
        """The patient point at fractional pixel (row, col)."""
        return self.axes.from_view(self.x0 + col * self.dx, self.y0 + row * self.dy, self.depth)

    def with_depth(self, depth: float) -> PlaneGrid:
        """The same pixels on a parallel plane (a slab's sub-planes)."""
        return PlaneGrid(self.axes, float(depth), self.x0, self.y0, self.dx, self.dy, self.width, self.height)


def sampling_step(frame: SliceFrame, axis: np.ndarray) -> float:
    """Pixel size (mm) along a screen axis: the column/row spacing along the slices' rows/columns, the finer
    in-plane spacing along the normal (so a reformat shows each slice's true height, interpolated between), and
    in between for an oblique axis."""
    fine = min(frame.dx, frame.dy)
    per_mm = np.hypot(
        np.hypot((axis @ frame.row) / frame.dx, (axis @ frame.col) / frame.dy), (axis @ frame.normal) / fine
    )
    return float(1.0 / per_mm)


def _aligned_axis(
    lo: float, hi: float, step: float, anchor: float, max_side: int = MAX_SIDE
) -> tuple[float, float, int]:
    """First pixel centre, step and count covering [lo, hi] on a grid through ``anchor``."""
    step = max(step, (hi - lo) / max_side, 1e-6)
    first = anchor + step * math.ceil((lo - anchor) / step - 1e-6)
    count = max(1, int(math.floor((hi - first) / step + 1e-6)) + 1)
    return first, step, count


class PlaneLayout:
    """The grids and scroll positions of the three planes of one stack.

    ``depths(kind)`` are the plane positions scrolling steps through: the slices' own positions for a plane
    parallel to them; planes one slice spacing apart (along the normal) for a plane mostly across the slices;
    one pixel apart otherwise.
    """

    def __init__(self, frame: SliceFrame) -> None:
        self.frame = frame
        self.axes = {kind: PlaneAxes.of(kind) for kind in PlaneKind}
        self._corners = frame.footprint()
        half = frame.normal * (
            frame.spacing / 2.0
        )  # the end slices reach half a spacing beyond their centres
        self._box = np.concatenate([self._corners - half, self._corners + half])
        self._depths = {kind: self._scroll_positions(self.axes[kind]) for kind in PlaneKind}

    def parallel(self, kind: PlaneKind) -> bool:
        """Whether the plane is parallel to the acquired slices."""
        return abs(float(self.axes[kind].w @ self.frame.normal)) >= ALIGNED

    def depths(self, kind: PlaneKind) -> np.ndarray:
        """Scroll positions (mm along ``w``, ascending)."""
        return self._depths[kind]

    def snap(self, kind: PlaneKind, depth: float) -> float:
        """The scroll position nearest ``depth``."""
        depths = self._depths[kind]
        return float(depths[int(np.argmin(np.abs(depths - depth)))])

    def step(self, kind: PlaneKind, depth: float, delta: int) -> float:
        """The scroll position ``delta`` steps from the one nearest ``depth`` (clamped to the stack)."""
        depths = self._depths[kind]
        index = int(np.argmin(np.abs(depths - depth)))
        return float(depths[min(max(index + int(delta), 0), len(depths) - 1)])

    def index_of(self, kind: PlaneKind, depth: float) -> int:
        """Which scroll position is nearest ``depth`` (0-based)."""
        return int(np.argmin(np.abs(self._depths[kind] - depth)))

    def grid(self, kind: PlaneKind, depth: float) -> PlaneGrid:
        """The pixel grid of plane ``kind`` at ``depth``."""
        axes = self.axes[kind]
        frame = self.frame
        if self.parallel(kind):
            k = int(np.argmin(np.abs(frame.positions @ axes.w - depth)))
            corners = frame.footprint(k)
            anchor = frame.positions[k]
        else:
            corners = self._box
            anchor = frame.positions[0]
        xs, ys = corners @ axes.u, corners @ axes.v
        x0, dx, width = _aligned_axis(
            float(xs.min()), float(xs.max()), sampling_step(frame, axes.u), float(anchor @ axes.u)
        )
        y0, dy, height = _aligned_axis(
            float(ys.min()), float(ys.max()), sampling_step(frame, axes.v), float(anchor @ axes.v)
        )
        return PlaneGrid(axes, float(depth), x0, y0, dx, dy, width, height)

    def _scroll_positions(self, axes: PlaneAxes) -> np.ndarray:
        frame = self.frame
        along = abs(float(axes.w @ frame.normal))
        if along >= ALIGNED:
            return np.sort(frame.positions @ axes.w)
        span = self._box @ axes.w
        anchor = float(frame.positions[0] @ axes.w)
        if along >= 0.7:  # one position per slice spacing, through the slices' centres
            step = frame.spacing / along
            centres = frame.slice_centres() @ axes.w
            anchor = float(centres[0])
            lo, hi = float(centres.min()), float(centres.max())
        else:
            step = sampling_step(frame, axes.w)
            lo, hi = float(span.min()) + step / 2, float(span.max()) - step / 2
        first, step, count = _aligned_axis(lo, hi, step, anchor, max_side=4096)
        return first + step * np.arange(count)
