"""Split one series into stacks a viewer can show in correct geometry, from headers alone.

A DICOM series may hold a localizer beside the axials, two orientations, several echoes or repeated
acquisitions at the same positions. Like 3D Slicer's ``examineFiles``, each coherent group becomes its own
:class:`Stack` (ordered along its normal, with geometry warnings), instead of being merged silently.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from viewer.dicom.geometry import (
    GeometryWarning,
    StackGeometry,
    direction_letters,
    normal_from_orientation,
    order_along_normal,
    orientation_key,
)
from viewer.dicom.headers import FrameGeometry, InstanceHeader


@dataclass(frozen=True, slots=True)
class SliceRef:
    """One 2D image: a frame of a file."""

    header: InstanceHeader
    frame: int = 0

    @property
    def geometry(self) -> FrameGeometry:
        """This frame's geometry (empty when the header lists none for it)."""
        frames = self.header.frames
        return frames[self.frame] if self.frame < len(frames) else FrameGeometry()


@dataclass(slots=True)
class Stack:
    """A set of slices of one series that form one volume (or a single image), in display order.

    ``slices[0]`` is the slice with the smallest position along the normal. ``uid`` identifies the stack across
    the app: the SeriesInstanceUID, with ``#k`` appended when the series splits into several stacks.
    """

    uid: str
    series_uid: str
    label: str
    slices: list[SliceRef]
    orientation: tuple[float, ...] | None
    distances: np.ndarray | None
    spacing: float | None
    tilt_deg: float = 0.0
    warnings: list[GeometryWarning] = field(default_factory=list)

    @property
    def first(self) -> InstanceHeader:
        """Header of the first slice in display order."""
        return self.slices[0].header

    @property
    def n_slices(self) -> int:
        """Number of slices."""
        return len(self.slices)

    @property
    def rows(self) -> int:
        """Rows of the first slice."""
        return self.first.rows

    @property
    def columns(self) -> int:
        """Columns of the first slice."""
        return self.first.columns

    @property
    def modality(self) -> str:
        """Modality of the first slice."""
        return self.first.modality

    @property
    def is_colour(self) -> bool:
        """Whether the first slice is colour."""
        return self.first.is_colour

    @property
    def files(self) -> list[str]:
        """Distinct files of the stack in slice order."""
        seen: dict[str, None] = {}
        for s in self.slices:
            seen.setdefault(s.header.path, None)
        return list(seen)


def _usable(orientation: Sequence[float] | None) -> Sequence[float] | None:
    """The orientation, or None when its cosines are degenerate (zero or parallel) and give no normal."""
    if orientation is None:
        return None
    try:
        normal_from_orientation(orientation)
    except ValueError:
        return None
    return orientation


def _plane_name(orientation: Sequence[float] | None) -> str:
    if _usable(orientation) is None:
        return "image"
    n = np.abs(normal_from_orientation(orientation))
    axis = int(np.argmax(n))
    oblique = n[axis] < 0.95
    name = ("sagittal", "coronal", "axial")[axis]
    return f"oblique {name}" if oblique else name


def _group_key(ref: SliceRef) -> tuple:
    h, g = ref.header, ref.geometry
    return (
        orientation_key(g.orientation),
        h.rows,
        h.columns,
        h.samples_per_pixel,
        h.is_localizer,
        h.echo_number,
        g.stack_id,
        g.temporal_position,
    )


def _slices_of(headers: Iterable[InstanceHeader]) -> list[SliceRef]:
    refs: list[SliceRef] = []
    for h in headers:
        refs.extend(SliceRef(h, f) for f in range(max(1, h.number_of_frames)))
    return refs


def _has_duplicates(refs: list[SliceRef]) -> bool:
    positions = [r.geometry.position for r in refs]
    if any(p is None for p in positions):
        return False
    rounded = {tuple(round(v, 2) for v in p) for p in positions}
    return len(rounded) < len(positions)


def _split_repeats(refs: list[SliceRef]) -> list[list[SliceRef]]:
    """Repeated positions with different acquisition numbers are separate acquisitions (Slicer does the same)."""
    if not _has_duplicates(refs):
        return [refs]
    by_acq: dict[int | None, list[SliceRef]] = defaultdict(list)
    for r in refs:
        by_acq[r.header.acquisition_number].append(r)
    if len(by_acq) > 1 and all(not _has_duplicates(g) for g in by_acq.values()):
        return [by_acq[k] for k in sorted(by_acq, key=lambda k: (k is None, k or 0))]
    return [refs]


def _order(refs: list[SliceRef]) -> tuple[list[SliceRef], StackGeometry | None]:
    orientation = _usable(refs[0].geometry.orientation)
    positions = [r.geometry.position for r in refs]
    if orientation is None or any(p is None for p in positions):
        # No patient geometry (CR/DX/US, secondary capture, classic multi-frame): keep file/frame order.
        key = [(r.header.instance_number or 0, r.header.path, r.frame) for r in refs]
        ordered = [refs[i] for i in sorted(range(len(refs)), key=key.__getitem__)]
        return ordered, None
    geo = order_along_normal(np.array(positions, dtype=float), orientation)
    return [refs[i] for i in geo.order], geo


def split_series(headers: Sequence[InstanceHeader]) -> list[Stack]:
    """Split the headers of one series into stacks, each ordered along its slice normal.

    The largest stack comes first, so a consumer that wants "the" volume of a series takes ``stacks[0]``.
    """
    if not headers:
        return []
    series_uid = headers[0].series_instance_uid
    groups: dict[tuple, list[SliceRef]] = defaultdict(list)
    for ref in _slices_of(headers):
        groups[_group_key(ref)].append(ref)

    parts: list[list[SliceRef]] = []
    for refs in groups.values():
        parts.extend(_split_repeats(refs))

    stacks: list[Stack] = []
    for refs in parts:
        ordered, geo = _order(refs)
        first = ordered[0]
        orientation = _usable(first.geometry.orientation)
        label = _plane_name(orientation)
        if first.header.is_localizer:
            label = "localizer"
        if first.header.echo_number is not None and any(
            r.header.echo_number != first.header.echo_number for p in parts for r in p
        ):
            label += f" echo {first.header.echo_number:g}"
        warnings = list(geo.warnings) if geo else []
        if geo is None and len(ordered) > 1 and orientation is None:
            warnings.append(GeometryWarning("no_geometry", "no patient position: slices kept in file order"))
        stacks.append(
            Stack(
                uid=series_uid,
                series_uid=series_uid,
                label=label,
                slices=ordered,
                orientation=orientation,
                distances=geo.distances if geo else None,
                spacing=geo.spacing if geo else None,
                tilt_deg=geo.tilt_deg if geo else 0.0,
                warnings=[w for w in warnings if w.kind != "single"],
            )
        )

    stacks.sort(key=lambda s: (s.first.is_localizer, -s.n_slices))
    if len(stacks) > 1 and all(s.n_slices == 1 for s in stacks):
        stacks = _image_sets(series_uid, stacks)
    if len(stacks) > 1:
        sized = len({(s.rows, s.columns) for s in stacks}) > 1
        for k, s in enumerate(stacks):
            s.uid = f"{series_uid}#{k + 1}"
            size = f" {s.rows}×{s.columns}" if sized else ""
            s.label = f"{s.label}{size} ({s.n_slices} image{'' if s.n_slices == 1 else 's'})"
    return stacks


def _matrix(ref: SliceRef) -> tuple[int, int, bool]:
    """What one array of slices must share: rows, columns and whether it is colour."""
    return ref.header.rows, ref.header.columns, ref.header.is_colour


def _image_sets(series_uid: str, singles: list[Stack]) -> list[Stack]:
    """Single-image stacks gathered into one browsable set per matrix size (an array holds one size only).

    A size with one image keeps its own stack; the largest set comes first.
    """
    by_matrix: dict[tuple[int, int, bool], list[Stack]] = defaultdict(list)
    for s in singles:
        by_matrix[_matrix(s.slices[0])].append(s)
    sets = [
        _image_set(series_uid, [s.slices[0] for s in group]) if len(group) > 1 else group[0]
        for group in by_matrix.values()
    ]
    sets.sort(key=lambda s: (s.first.is_localizer, -s.n_slices))
    return sets


def _image_set(series_uid: str, refs: list[SliceRef]) -> Stack:
    """Single images of differing geometry (a 3-plane localizer, a CR pair): browsable, but not a volume."""
    refs = sorted(refs, key=lambda r: (r.header.instance_number or 0, r.header.path, r.frame))
    warning = GeometryWarning(
        "no_geometry", "images of different orientations: shown one by one, not as a volume"
    )
    label = "localizer" if refs[0].header.is_localizer else "images"
    return Stack(series_uid, series_uid, label, refs, None, None, None, 0.0, [warning])


def orientation_letters(orientation: Sequence[float]) -> dict[str, str]:
    """Letters for the four image edges: right/left/bottom/top of the displayed image.

    The image's column index grows along the row cosine, the row index along the column cosine.
    """
    row = np.asarray(orientation[:3], float)
    col = np.asarray(orientation[3:6], float)
    return {
        "right": direction_letters(row),
        "left": direction_letters(-row),
        "bottom": direction_letters(col),
        "top": direction_letters(-col),
    }
