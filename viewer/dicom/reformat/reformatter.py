"""On-demand reformats of one loaded stack: a plane image at a depth, a slab, a value at a patient point.

:class:`Reformatter` is what a viewer holds per stack: the :class:`~viewer.dicom.reformat.frame.SliceFrame`, the
three planes' grids and scroll positions, and the last plan of each plane (re-used while the plane stays put and
only its overlay or the window changes). It never copies the volume: every call computes the one plane asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from viewer.dicom.reformat.bands import SliceBands, slice_bands
from viewer.dicom.reformat.frame import SliceFrame
from viewer.dicom.reformat.planes import PlaneGrid, PlaneKind, PlaneLayout, sampling_step
from viewer.dicom.reformat.sampler import SamplingPlan, Source, plan_plane
from viewer.dicom.reformat.slab import Slab, combine, slab_offsets
from viewer.dicom.volume import Volume

GAP_MODES = ("blank", "interpolate")


@dataclass(slots=True)
class PlaneImage:
    """One reformatted plane: float32 values on ``grid`` (NaN where no slice lies), and what to say about it."""

    grid: PlaneGrid
    data: np.ndarray
    notes: list[str] = field(default_factory=list)


class Reformatter:
    """Axial, coronal and sagittal planes of one stack in patient coordinates, computed on demand.

    ``gaps="blank"`` leaves a gap between slices empty; ``"interpolate"`` fills it by interpolation and every
    plane crossing it says so in its notes.
    """

    def __init__(self, frame: SliceFrame, gaps: str = "blank") -> None:
        if gaps not in GAP_MODES:
            raise ValueError(f"gaps must be one of {GAP_MODES}")
        self.frame = frame
        self.gaps = gaps
        self.layout = PlaneLayout(frame)
        self._plans: dict[tuple[PlaneKind, float], SamplingPlan] = {}

    @classmethod
    def of(cls, volume: Volume, gaps: str = "blank") -> Reformatter:
        """The reformatter of a loaded greyscale volume."""
        if volume.is_colour or volume.array.ndim != 3:
            raise ValueError("reformats need a greyscale volume")
        return cls(SliceFrame.from_volume(volume), gaps)

    def grid(self, kind: PlaneKind, depth: float) -> PlaneGrid:
        """The pixel grid of plane ``kind`` at ``depth``."""
        return self.layout.grid(PlaneKind(kind), depth)

    def plan(self, kind: PlaneKind, depth: float) -> SamplingPlan:
        """The sampling plan of plane ``kind`` at ``depth`` (the last one of each plane is kept, and a move within
        the slices derives the next one from it: :meth:`SamplingPlan.shifted`)."""
        kind = PlaneKind(kind)
        key = (kind, round(float(depth), 6))
        plan = self._plans.get(key)
        if plan is None:
            grid = self.grid(kind, depth)
            previous = next((p for k, p in self._plans.items() if k[0] == kind), None)
            plan = previous.shifted(grid, self.frame) if previous is not None else None
            if plan is None:
                plan = plan_plane(self.frame, grid, self.gaps)
            self._plans = {k: p for k, p in self._plans.items() if k[0] != kind}
            self._plans[key] = plan
        return plan

    def plane(
        self,
        source: Source,
        kind: PlaneKind,
        depth: float,
        *,
        slab: Slab | None = None,
        normal: str = "linear",
        fill: float = np.nan,
    ) -> PlaneImage:
        """Plane ``kind`` at ``depth`` (mm along its ``w``) sampled from ``source`` (the volume array or a
        per-slice map source), as a thick ``slab`` when given."""
        kind = PlaneKind(kind)
        notes = self._notes(kind)
        if slab is None or slab.thickness <= 0:
            plan = self.plan(kind, depth)
            return PlaneImage(plan.grid, plan.sample(source, normal=normal, fill=fill), notes)
        grid = self.grid(kind, depth)
        planes = (
            plan_plane(self.frame, grid.with_depth(d), self.gaps).sample(source, normal=normal)
            for d in self._slab_depths(kind, depth, slab.thickness)
        )
        data = combine(planes, slab.mode)
        if not np.isnan(fill):
            data = np.where(np.isnan(data), np.float32(fill), data)
        return PlaneImage(grid, data, [*notes, slab.label()])

    def _slab_depths(self, kind: PlaneKind, depth: float, thickness: float) -> np.ndarray:
        if self.layout.parallel(kind):  # the acquired slices within the slab, at their true positions
            depths = self.layout.depths(kind)
            inside = depths[np.abs(depths - depth) <= thickness / 2.0 + 1e-6]
            return inside if len(inside) else np.asarray([depth])
        w = self.layout.axes[kind].w
        across = abs(float(w @ self.frame.normal))
        step = self.frame.spacing / across if across >= 0.7 else sampling_step(self.frame, w)
        return depth + slab_offsets(thickness, step)

    def _notes(self, kind: PlaneKind) -> list[str]:
        if not self.frame.has_gap or self.layout.parallel(kind):
            return []
        if self.gaps == "interpolate":
            return ["gap between slices interpolated"]
        return ["gap between slices left blank"]

    def value_at(self, source: Source, point: np.ndarray, normal: str = "linear") -> float | None:
        """The value at a patient point, interpolated as the planes are (None outside the stack or in a gap)."""
        axes = self.layout.axes[PlaneKind.AXIAL]
        x, y, depth = axes.to_view(point)
        grid = PlaneGrid(axes, depth, x, y, 1.0, 1.0, 1, 1)
        value = float(plan_plane(self.frame, grid, self.gaps).sample(source, normal=normal)[0, 0])
        return None if np.isnan(value) else value

    def slice_bands(self, kind: PlaneKind) -> SliceBands | None:
        """Where each acquired slice lies along plane ``kind`` (None for a plane parallel to the slices)."""
        return slice_bands(self.frame, self.layout.axes[PlaneKind(kind)])

    def nearest_slice(self, point: np.ndarray) -> int | None:
        """The acquired slice nearest a patient point along the normal (None outside the stack or in a gap)."""
        kappa, valid = self.frame.fractional_slice(np.asarray(np.asarray(point, float) @ self.frame.normal))
        return int(np.rint(kappa)) if bool(valid) else None

    def slice_point(self, k: int) -> np.ndarray:
        """The centre of acquired slice ``k`` (patient mm)."""
        return self.frame.slice_centres()[int(k)]
