"""Which numpy type a loaded greyscale volume's modality values get.

Stored values are integers; the modality transform (PS3.3 C.11.1) keeps them integers when the rescale slope and
intercept are integers, or when a Modality LUT maps them (LUT data are integers). Then the volume keeps the
narrowest integer type that holds every value exactly (int16 for CT, as SimpleITK keeps it; half the bytes of
float32), and float32 is used only where the values are not integers: a fractional slope or intercept, or slices
whose transforms differ.

How a load chooses (:func:`plan_for`), then checks each slice as it is decoded (:func:`check_frame`):

1. every slice must use the same transform: the indexed headers' rescale values are compared before anything is
   allocated, and each frame's own transform (functional groups, Modality LUT) is compared as it is decoded;
2. the type comes from the range the transform gives the stored values. A stored range that only an int32 holds
   (BitsStored 16 with an intercept, as many CT scanners write) is tried as a 16-bit type first, because the
   values themselves nearly always fit: each decoded slice's own minimum and maximum are checked (about 20 µs
   for 512²);
3. a slice that breaks the plan raises :class:`PlanBroken`, and the reader loads the stack again with the
   plan's fallback (the type the stored range needs, or float32).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from viewer.dicom.pixels import LUT, ModalityParams, SourceFile
from viewer.dicom.stacks import SliceRef

FLOAT = np.dtype(np.float32)
INTEGER_TYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.int32)
)
"""The integer types a volume may have, narrowest first. Not uint32: numpy readily promotes its arithmetic to
int64 or float64, and a stored range that needs it gets float32, as before integer volumes."""


def integer_type_for(lo: float, hi: float) -> np.dtype | None:
    """The first of :data:`INTEGER_TYPES` holding every integer in ``[lo, hi]`` (None when none does)."""
    for dtype in INTEGER_TYPES:
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return dtype
    return None


def stored_range(bits_stored: int, signed: bool) -> tuple[int, int]:
    """The stored values ``bits_stored`` bits can hold (two's complement when ``signed``)."""
    bits = max(1, int(bits_stored))
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _integral(value: float) -> bool:
    value = float(value)
    return math.isfinite(value) and value == round(value)


def _lut_range(lut: LUT) -> tuple[int, int] | None:
    table = np.asarray(lut.table)
    if table.size == 0 or not np.all(np.isfinite(table)) or not np.array_equal(table, np.round(table)):
        return None
    return int(table.min()), int(table.max())


def modality_range(params: ModalityParams, lo: int, hi: int) -> tuple[int, int] | None:
    """The modality values stored values in ``[lo, hi]`` give, or None when they are not all integers.

    A Modality LUT gives its table's values (inputs outside the table clamp to its ends).
    """
    if params.lut is not None:
        return _lut_range(params.lut)
    if not (_integral(params.slope) and _integral(params.intercept)):
        return None
    slope, intercept = int(round(params.slope)), int(round(params.intercept))
    ends = (slope * lo + intercept, slope * hi + intercept)
    return min(ends), max(ends)


def same_transform(a: ModalityParams, b: ModalityParams) -> bool:
    """Whether two frames' modality transforms are the same (same rescale, or equal Modality LUTs)."""
    if (a.lut is None) != (b.lut is None):
        return False
    if a.lut is not None and b.lut is not None:
        return a.lut.first_mapped == b.lut.first_mapped and np.array_equal(a.lut.table, b.lut.table)
    return a.slope == b.slope and a.intercept == b.intercept


@dataclass(frozen=True, slots=True)
class ModalityPlan:
    """The volume's type and, for an integer type, the one transform every slice must share.

    An integer plan (``params`` set) has each decoded slice checked (:func:`check_frame`); ``fallback`` is the
    plan the load is repeated with when a slice breaks it. The float32 plan (no ``params``) takes every slice.
    ``why`` says how the type was chosen (for the debug log).
    """

    dtype: np.dtype
    params: ModalityParams | None = None
    fallback: ModalityPlan | None = None
    why: str = ""


FLOAT_PLAN = ModalityPlan(FLOAT, why="float32")


def float_plan(why: str) -> ModalityPlan:
    """The plan that takes every slice: float32 modality values (the type before integer volumes existed)."""
    return ModalityPlan(FLOAT, why=why)


class PlanBroken(Exception):
    """A slice does not fit the volume's type; the load is repeated with :attr:`fallback`."""

    def __init__(self, why: str, fallback: ModalityPlan) -> None:
        super().__init__(why)
        self.fallback = fallback


def _headers_agree(refs: Sequence[SliceRef]) -> bool:
    """Whether the indexed headers give every slice the same rescale and the same stored type."""
    keys = {
        (h.rescale_slope, h.rescale_intercept, h.bits_allocated, h.pixel_representation)
        for h in (r.header for r in refs)
    }
    return len(keys) <= 1


def plan_for(first: SourceFile, frame: int, refs: Sequence[SliceRef]) -> ModalityPlan:
    """The type of a greyscale stack's volume, from its first readable file and the stack's slices.

    The other frames of ``first`` are compared with ``frame`` here (their transforms are in the file already
    parsed); other files' frames are compared as they are decoded.
    """
    params = first.modality_params(frame)
    if not _headers_agree(refs):
        return float_plan("float32: the slices' rescale or stored types differ")
    for r in refs:
        if r.header.path == first.path and not same_transform(first.modality_params(r.frame), params):
            return float_plan("float32: the frames' modality transforms differ")
    bound = modality_range(params, *stored_range(first.bits_stored, first.signed))
    if bound is None:
        return float_plan("float32: the modality transform does not keep integers")
    needed = integer_type_for(*bound)
    if needed is None:
        safe = float_plan("float32: the stored values' range needs more than 32 bits")
    else:
        safe = ModalityPlan(needed, params, FLOAT_PLAN, f"{needed}: holds the stored values' range")
    # A LUT's range is its table's, whatever the slice holds; 32-bit stored values rarely fit 16 bits.
    if (needed is not None and needed.itemsize <= 2) or params.lut is not None or first.bits_allocated > 16:
        return safe
    hopeful = np.dtype(np.int16 if bound[0] < 0 else np.uint16)
    return ModalityPlan(hopeful, params, safe, f"{hopeful}: checked slice by slice, else {safe.dtype}")


@lru_cache(maxsize=64)
def _range_fits(slope: float, intercept: float, bits_stored: int, signed: bool, dtype: np.dtype) -> bool:
    """Whether every stored value ``bits_stored`` bits hold maps into ``dtype`` under a plain rescale (the same
    answer for every slice of a series: asked once, not per slice)."""
    bound = modality_range(ModalityParams(slope, intercept), *stored_range(bits_stored, signed))
    info = np.iinfo(dtype)
    return bound is not None and info.min <= bound[0] and bound[1] <= info.max


def check_frame(
    plan: ModalityPlan, params: ModalityParams, stored: np.ndarray, bits: tuple[int, bool] | None = None
) -> None:
    """Raise :class:`PlanBroken` unless this frame's modality values fit ``plan`` exactly.

    The frame must use the plan's transform, and its stored values (their own minimum and maximum, so a decoder
    that returns values beyond BitsStored is caught too) must map into the plan's type. ``bits`` =
    ``(bits_stored, signed)`` says the values are known to lie in that range (a direct read masks them to it):
    when the whole range fits, the two passes over the slice for its minimum and maximum are skipped.
    """
    if plan.params is None:
        return
    fallback = plan.fallback or FLOAT_PLAN
    if not same_transform(params, plan.params):
        raise PlanBroken("a slice's modality transform differs from the first slice's", FLOAT_PLAN)
    if stored.size == 0 or stored.dtype.kind not in "iu":
        raise PlanBroken(f"a slice's stored values are {stored.dtype}", FLOAT_PLAN)
    if (
        bits is not None
        and params.lut is None
        and _range_fits(params.slope, params.intercept, *bits, plan.dtype)
    ):
        return
    values = modality_range(params, int(stored.min()), int(stored.max()))
    if values is None:
        raise PlanBroken("a slice's modality values are not integers", FLOAT_PLAN)
    info = np.iinfo(plan.dtype)
    if values[0] < info.min or values[1] > info.max:
        raise PlanBroken(f"a slice's values {values[0]}..{values[1]} do not fit {plan.dtype}", fallback)
