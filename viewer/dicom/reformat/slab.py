"""Thick slabs: the maximum, minimum or mean of the planes within a slab thickness (mm) around a plane."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

#: Most sub-planes one slab samples (a thicker slab samples them farther apart).
MAX_SUBPLANES = 64


class SlabMode(StrEnum):
    """How a slab's planes combine."""

    MIP = "mip"
    MINIP = "minip"
    MEAN = "mean"


SLAB_NAMES: dict[SlabMode, str] = {SlabMode.MIP: "MIP", SlabMode.MINIP: "MinIP", SlabMode.MEAN: "Average"}


@dataclass(frozen=True, slots=True)
class Slab:
    """A slab ``thickness`` mm thick (centred on the plane) combined by ``mode``."""

    mode: SlabMode
    thickness: float

    def label(self) -> str:
        """E.g. ``"MIP 10 mm"``."""
        return f"{SLAB_NAMES[SlabMode(self.mode)]} {self.thickness:g} mm"


def slab_offsets(thickness: float, step: float) -> np.ndarray:
    """Depth offsets (mm) of the sub-planes of a slab: ``step`` apart, symmetric, spanning the thickness."""
    if thickness <= 0 or step <= 0:
        return np.zeros(1)
    half = thickness / 2.0
    count = min(MAX_SUBPLANES // 2, int(math.floor(half / step + 1e-6)))
    step = max(step, half / max(count, 1)) if count else step
    return step * np.arange(-count, count + 1, dtype=np.float64)


def combine(planes: Iterable[np.ndarray], mode: SlabMode) -> np.ndarray:
    """One image from a slab's planes, pixel by pixel, ignoring NaN (outside the stack or in a gap); a running
    reduction, so at most two planes are in memory at once."""
    mode = SlabMode(mode)
    result: np.ndarray | None = None
    count: np.ndarray | None = None
    for plane in planes:
        if result is None:
            result = plane.astype(np.float32, copy=True)
            if mode is SlabMode.MEAN:
                count = (~np.isnan(plane)).astype(np.float32)
                result = np.nan_to_num(result, nan=0.0)
            continue
        if mode is SlabMode.MIP:
            np.fmax(result, plane, out=result)
        elif mode is SlabMode.MINIP:
            np.fmin(result, plane, out=result)
        else:
            assert count is not None
            present = ~np.isnan(plane)
            result += np.where(present, plane, 0.0)
            count += present
    if result is None:
        raise ValueError("a slab needs at least one plane")
    if mode is SlabMode.MEAN:
        assert count is not None
        with np.errstate(invalid="ignore", divide="ignore"):
            result = np.where(count > 0, result / np.maximum(count, 1), np.nan).astype(np.float32)
    return result
