"""Acquisition changes applied to one labelled series: the transforms of the robustness evaluation.

Each transform is a pure function of a :class:`Sample` (HU volume, its geometry and its ground truth) that returns
a new sample; nothing is changed in place, and a transform that would leave the series as it is returns the very
same object, so a caller can tell "unchanged" from "changed a little". A change that cannot be made from the series
without inventing data (slices thinner than the source's) raises :class:`NotMeasurable`.

The ground truth follows the voxels:

- slices dropped, averaged or reordered take their labels along (a slab is a bleed slice when any of its source
  slices was; its mask is the union);
- in-plane resampling keeps every slice's label (nothing leaves the image) and resamples the mask;
- transforms that remove image content or cut new planes (a smaller field of view, a gantry tilt, a half-slice
  resampling) recompute each slice's label from its mask with the phantom generator's rule: a slice shows a
  bleed when at least :data:`~viewer.synth.study.MIN_SLICE_AREA_MM2` of it is bleed;
- with slice labels, the study label is whether any slice is still a bleed slice.

Without a mask, the transforms that need one leave the slice labels unknown (None) and the study label as given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from viewer.dicom.geometry import normal_from_orientation, order_along_normal, tilt_angle
from viewer.model.preprocess import AIR_HU
from viewer.synth.study import MIN_SLICE_AREA_MM2

#: A requested size (mm) that whole slices or pixels reach within this fraction counts as reached.
SIZE_TOLERANCE = 0.1
# Slices resampled at once by the in-plane transforms (bounds memory for 512² series).
_CHUNK = 16


class NotMeasurable(ValueError):
    """This change cannot be made from this series without inventing data; the message says why."""


@dataclass(frozen=True, eq=False)
class Sample:
    """One series as the model's path sees it, with its ground truth.

    Attributes
    ----------
    hu:
        ``(z, y, x)`` float32 HU; slice 0 has the smallest position along the normal.
    spacing:
        ``(dz, dy, dx)`` mm: slice spacing along the normal, row and column spacing.
    positions:
        ``(z, 3)`` ImagePositionPatient (LPS mm) of each slice's first pixel.
    orientation:
        ImageOrientationPatient: row direction, then column direction.
    thickness:
        Nominal slice thickness (mm).
    label:
        Study label (1: bleed).
    slice_labels:
        ``(z,)`` uint8, or None when unknown.
    mask:
        ``(z, y, x)`` bool bleed mask, or None.
    """

    hu: np.ndarray
    spacing: tuple[float, float, float]
    positions: np.ndarray
    orientation: tuple[float, ...]
    thickness: float
    label: int
    slice_labels: np.ndarray | None = None
    mask: np.ndarray | None = None

    @property
    def n_slices(self) -> int:
        """Number of slices."""
        return int(self.hu.shape[0])

    @property
    def fov_mm(self) -> float:
        """The larger in-plane extent of the image (mm)."""
        return float(max(self.hu.shape[1] * self.spacing[1], self.hu.shape[2] * self.spacing[2]))

    @property
    def row_dir(self) -> np.ndarray:
        """Direction of increasing column index (LPS)."""
        return np.asarray(self.orientation[:3], dtype=np.float64)

    @property
    def col_dir(self) -> np.ndarray:
        """Direction of increasing row index (LPS)."""
        return np.asarray(self.orientation[3:6], dtype=np.float64)


def _with_labels(sample: Sample, slice_labels: np.ndarray | None, **changes: object) -> Sample:
    """``sample`` with new slice labels, and the study label they imply (kept as given without slice labels)."""
    label = sample.label if slice_labels is None else int(bool(np.any(slice_labels)))
    return replace(sample, slice_labels=slice_labels, label=label, **changes)  # type: ignore[arg-type]


def visible_slices(mask: np.ndarray, pixel_area_mm2: float) -> np.ndarray:
    """``(z,)`` uint8: 1 where a slice holds at least :data:`MIN_SLICE_AREA_MM2` of bleed (the generator's rule)."""
    area = mask.reshape(mask.shape[0], -1).sum(axis=1) * pixel_area_mm2
    return (area >= MIN_SLICE_AREA_MM2 - 1e-9).astype(np.uint8)


# -- intensity -------------------------------------------------------------------------------------------------


def add_noise(sample: Sample, sd_hu: float, rng: np.random.Generator) -> Sample:
    """White Gaussian noise of ``sd_hu`` HU added to every voxel (``rng`` makes it repeatable)."""
    if sd_hu < 0:
        raise ValueError("the noise SD must not be negative")
    if sd_hu == 0:
        return sample
    noise = rng.standard_normal(sample.hu.shape, dtype=np.float32) * np.float32(sd_hu)
    return replace(sample, hu=np.asarray(sample.hu, dtype=np.float32) + noise)


def offset_hu(sample: Sample, delta_hu: float) -> Sample:
    """Every voxel shifted by ``delta_hu`` (a miscalibrated scanner)."""
    if delta_hu == 0:
        return sample
    return replace(sample, hu=np.asarray(sample.hu, dtype=np.float32) + np.float32(delta_hu))


# -- along the slices ------------------------------------------------------------------------------------------


def thicken(sample: Sample, thickness_mm: float) -> Sample:
    """Average adjacent slices into slabs of ``thickness_mm``, as a scanner reconstructs thick slices from thin.

    ``k = round(thickness / dz)`` consecutive slices make a slab, from the first slice on (the last slab may hold
    fewer, as in :class:`~viewer.model.preprocess.SlabAverage`); a slab lies at the mean position of its slices.

    Raises
    ------
    NotMeasurable
        ``thickness_mm`` is thinner than the series' slices, or whole slices cannot make it (within
        :data:`SIZE_TOLERANCE`).
    """
    dz = sample.spacing[0]
    if thickness_mm < dz * (1 - SIZE_TOLERANCE):
        raise NotMeasurable(f"{thickness_mm:g} mm is thinner than the series' {dz:g} mm slices")
    k = max(1, int(round(thickness_mm / dz)))
    if abs(k * dz - thickness_mm) > SIZE_TOLERANCE * thickness_mm:
        raise NotMeasurable(f"whole {dz:g} mm slices do not make {thickness_mm:g} mm slabs")
    if k == 1:
        return sample
    starts = np.arange(0, sample.n_slices, k)
    slabs = [slice(s, min(s + k, sample.n_slices)) for s in starts]
    hu = np.asarray(sample.hu, dtype=np.float32)
    averaged = np.stack([hu[s].mean(0, dtype=np.float64).astype(np.float32) for s in slabs])
    positions = np.stack([sample.positions[s].mean(0) for s in slabs])
    labels = None
    if sample.slice_labels is not None:
        labels = np.asarray([sample.slice_labels[s].max() for s in slabs], dtype=np.uint8)
    mask = None if sample.mask is None else np.stack([sample.mask[s].any(0) for s in slabs])
    return _with_labels(
        sample,
        labels,
        hu=averaged,
        positions=positions,
        mask=mask,
        spacing=(dz * k, sample.spacing[1], sample.spacing[2]),
        thickness=sample.thickness + (k - 1) * dz,
    )


def every_nth(n_slices: int, n: int = 10) -> np.ndarray:
    """Indices of every ``n``-th slice (the ``n``-th, ``2n``-th, …): never the first slice."""
    return np.arange(n - 1, n_slices, n)


def random_fraction(n_slices: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``round(fraction · n_slices)`` slices drawn without replacement."""
    count = int(round(fraction * n_slices))
    return np.sort(rng.choice(n_slices, size=count, replace=False))


def drop_slices(sample: Sample, indices: np.ndarray) -> Sample:
    """The series without the slices ``indices``; the rest keep their true positions, so gaps stay gaps.

    The slice spacing becomes what the loader measures on the remaining positions (the median step, see
    :func:`viewer.dicom.geometry.order_along_normal`).
    """
    drop = np.zeros(sample.n_slices, dtype=bool)
    drop[np.asarray(indices, dtype=int)] = True
    if not drop.any():
        return sample
    keep = ~drop
    if keep.sum() < 2:
        raise NotMeasurable("fewer than two slices would be left")
    positions = sample.positions[keep]
    dz = order_along_normal(positions, sample.orientation).spacing or sample.spacing[0]
    return _with_labels(
        sample,
        None if sample.slice_labels is None else sample.slice_labels[keep],
        hu=sample.hu[keep],
        positions=positions,
        mask=None if sample.mask is None else sample.mask[keep],
        spacing=(float(dz), sample.spacing[1], sample.spacing[2]),
    )


def shift_slices(sample: Sample, fraction: float) -> Sample:
    """Every slice resampled ``fraction`` of a slice further along the normal: a linear blend of neighbours.

    The series loses its last slice. It is the control of :func:`gantry_tilt`: the same interpolation between
    slices, without the tilt. Mask and labels as in the tilt (a voxel is bleed when its interpolated mask is at
    least one half; labels from the mask by the 3 mm² rule).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError("the shift is a fraction of a slice in [0, 1)")
    if fraction == 0.0:
        return sample
    if sample.n_slices < 2:
        raise NotMeasurable("a single slice cannot be shifted")
    f = np.float32(fraction)
    hu = np.asarray(sample.hu, dtype=np.float32)
    mask = None
    labels = None
    if sample.mask is not None:
        blend = (1 - f) * sample.mask[:-1].astype(np.float32) + f * sample.mask[1:].astype(np.float32)
        mask = blend >= 0.5
        labels = visible_slices(mask, sample.spacing[1] * sample.spacing[2])
    return _with_labels(
        sample,
        labels,
        hu=(1 - f) * hu[:-1] + f * hu[1:],
        positions=(1 - fraction) * sample.positions[:-1] + fraction * sample.positions[1:],
        mask=mask,
    )


def gantry_tilt(sample: Sample, degrees: float) -> Sample:
    """The series as a scanner with its gantry tilted by ``degrees`` about the left-right axis would cut it.

    Each new slice plane is the source's rotated about its row direction, so the column direction tips out of
    the plane (``col' = cos t · col − sin t · normal``; positive tilts raise the first rows, as
    :func:`viewer.synth.writer.axial_geometry` writes them). The slices stay where the table put them (the same
    table positions, image centres on the same axis), so the stack is sheared and the spacing along the new
    normal is ``dz · cos t``, as on a scanner. HU and mask are sampled trilinearly from the source; points
    beyond half a slice outside the source are air (no data there). Slice labels are recomputed from the
    resampled mask (see the module docstring).

    Raises
    ------
    NotMeasurable
        The source is itself tilted, has fewer than two slices, or is not sorted along its normal (as the
        loader sorts it).
    """
    if degrees == 0:
        return sample
    if sample.n_slices < 2:
        raise NotMeasurable("a single slice cannot be resampled along a tilted plane")
    normal = normal_from_orientation(sample.orientation)
    if tilt_angle(sample.positions, sample.orientation) > 0.5:
        raise NotMeasurable("the series is already tilted")
    t = math.radians(degrees)
    row, col = sample.row_dir, sample.col_dir
    new_col = math.cos(t) * col - math.sin(t) * normal
    _, rows, cols = sample.hu.shape
    dz, dy, dx = sample.spacing
    half = col * (rows - 1) / 2 * dy + row * (cols - 1) / 2 * dx
    new_half = new_col * (rows - 1) / 2 * dy + row * (cols - 1) / 2 * dx
    positions = sample.positions + half - new_half
    origin = sample.positions[0]
    along = (sample.positions - origin) @ normal
    if np.any(np.diff(along) <= 0):
        raise NotMeasurable("the slices are not sorted along their normal")
    jj, ii = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64), indexing="ij")
    hu = np.asarray(sample.hu, dtype=np.float32)
    mask = None if sample.mask is None else sample.mask.astype(np.float32)
    out_hu = np.empty_like(hu)
    out_mask = None if mask is None else np.empty(hu.shape, dtype=bool)
    for k in range(sample.n_slices):
        rel = (
            (positions[k] - origin)[:, None, None]
            + new_col[:, None, None] * (jj * dy)
            + row[:, None, None] * (ii * dx)
        )
        d = np.tensordot(normal, rel, axes=1)
        ks = np.interp(d, along, np.arange(sample.n_slices, dtype=np.float64))
        ks[(d < along[0] - dz / 2) | (d > along[-1] + dz / 2)] = -2.0  # no source data: air
        coords = np.stack([ks, np.tensordot(col, rel, axes=1) / dy, np.tensordot(row, rel, axes=1) / dx])
        out_hu[k] = ndimage.map_coordinates(hu, coords, order=1, mode="constant", cval=AIR_HU)
        if mask is not None and out_mask is not None:
            out_mask[k] = ndimage.map_coordinates(mask, coords, order=1, mode="constant", cval=0.0) >= 0.5
    orientation = tuple(float(v) for v in (*row, *new_col))
    labels = None if out_mask is None else visible_slices(out_mask, dy * dx)
    return _with_labels(
        sample,
        labels,
        hu=out_hu,
        positions=positions,
        orientation=orientation,
        mask=out_mask,
        spacing=(dz * math.cos(t), dy, dx),
    )


# -- in-plane --------------------------------------------------------------------------------------------------


def _resize_slices(volume: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of ``(z, y, x)`` float32 slices, as the model's own resize does."""
    out = np.empty((volume.shape[0], *shape), dtype=np.float32)
    with torch.no_grad():
        for first in range(0, volume.shape[0], _CHUNK):
            part = torch.from_numpy(np.ascontiguousarray(volume[first : first + _CHUNK], dtype=np.float32))
            resized = F.interpolate(
                part.unsqueeze(1), size=shape, mode="bilinear", align_corners=False, antialias=True
            )
            out[first : first + _CHUNK] = resized.squeeze(1).numpy()
    return out


def resample_matrix(sample: Sample, matrix: int) -> Sample:
    """The same field of view reconstructed on a ``matrix``-pixel grid (the longer side; aspect kept).

    HU are resized with an antialiased bilinear filter (a coarser grid averages, a finer one interpolates), the
    mask the same way and thresholded at one half; slice labels stay as they are.
    """
    if matrix < 8:
        raise ValueError("matrix must be at least 8 pixels")
    _, rows, cols = sample.hu.shape
    scale = matrix / max(rows, cols)
    shape = (max(1, int(round(rows * scale))), max(1, int(round(cols * scale))))
    if shape == (rows, cols):
        return sample
    dy, dx = sample.spacing[1] * rows / shape[0], sample.spacing[2] * cols / shape[1]
    # The image's outer edge stays put; its first pixel centre moves by the change of half a pixel.
    shift = sample.col_dir * (dy - sample.spacing[1]) / 2 + sample.row_dir * (dx - sample.spacing[2]) / 2
    mask = None
    if sample.mask is not None:
        mask = _resize_slices(sample.mask.astype(np.float32), shape) >= 0.5
    return replace(
        sample,
        hu=_resize_slices(np.asarray(sample.hu, dtype=np.float32), shape),
        positions=sample.positions + shift,
        mask=mask,
        spacing=(sample.spacing[0], dy, dx),
    )


def crop_or_pad(sample: Sample, fov_mm: float) -> Sample:
    """The image cut (or padded with air) about its centre to ``fov_mm`` square, at the same pixel spacing.

    Padding keeps every slice label; cropping recomputes them from the cropped mask (a bleed cut out of the
    image is no longer there to find).
    """
    if fov_mm <= 0:
        raise ValueError("the field of view must be positive")
    _, rows, cols = sample.hu.shape
    dy, dx = sample.spacing[1], sample.spacing[2]
    new_rows, new_cols = max(1, int(round(fov_mm / dy))), max(1, int(round(fov_mm / dx)))
    if (new_rows, new_cols) == (rows, cols):
        return sample
    top, left = (rows - new_rows) // 2, (cols - new_cols) // 2  # negative: padding

    def fit(volume: np.ndarray, fill: float | bool) -> np.ndarray:
        out = np.full((volume.shape[0], new_rows, new_cols), fill, dtype=volume.dtype)
        src_r0, src_c0 = max(0, top), max(0, left)
        dst_r0, dst_c0 = max(0, -top), max(0, -left)
        h = min(rows - src_r0, new_rows - dst_r0)
        w = min(cols - src_c0, new_cols - dst_c0)
        out[:, dst_r0 : dst_r0 + h, dst_c0 : dst_c0 + w] = volume[:, src_r0 : src_r0 + h, src_c0 : src_c0 + w]
        return out

    mask = None if sample.mask is None else fit(sample.mask, False)
    labels = sample.slice_labels
    cropped = new_rows < rows or new_cols < cols
    if cropped and mask is not None:
        labels = visible_slices(mask, dy * dx)
        if sample.slice_labels is not None:
            labels = labels & sample.slice_labels.astype(np.uint8)
    return _with_labels(
        sample,
        labels,
        hu=fit(np.asarray(sample.hu, dtype=np.float32), AIR_HU),
        positions=sample.positions + sample.col_dir * top * dy + sample.row_dir * left * dx,
        mask=mask,
    )


def change_fov(sample: Sample, fov_mm: float) -> Sample:
    """A reconstruction at ``fov_mm`` on the same matrix: crop or pad about the centre, then resample back to the
    original number of pixels (the pixel spacing becomes ``fov / matrix``)."""
    _, rows, cols = sample.hu.shape
    return resample_matrix(crop_or_pad(sample, fov_mm), max(rows, cols))
