"""The plain functions the window runs on workers: index, load (tagged), thumbnails, and the tag of a job on one
series. No Qt here.

Each takes ``progress`` and ``cancel`` like every headless job; what a worker thread delivers is tagged with the
stack uid and its owner's generation (:class:`JobTag`), so the window and its controllers can drop what a
superseded job still sends.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from viewer.dicom.index import StudyIndex, scan
from viewer.dicom.pixels import to_display
from viewer.dicom.readers import load_stack
from viewer.dicom.stacks import Stack
from viewer.dicom.volume import Volume
from viewer.progress import CancelFn, ProgressFn

THUMBNAIL_PIXELS = 112  # twice the browser's icon size, for high-DPI screens


@dataclass(frozen=True, slots=True)
class JobTag:
    """Which job on one series a worker signal belongs to: the stack and its owner's generation (the window's
    load generation, the analysis controller's analysis generation)."""

    stack_uid: str
    generation: int


@dataclass(frozen=True, slots=True)
class SliceReady:
    tag: JobTag
    k: int
    array: np.ndarray


def index_paths(paths: Sequence[str | Path], *, progress: ProgressFn, cancel: CancelFn) -> StudyIndex:
    """Index the folders, DICOMDIRs and files at ``paths`` (headers only)."""
    return scan([str(p) for p in paths], progress=progress, cancel=cancel)


def load_tagged(
    stack: Stack,
    tag: JobTag,
    *,
    progress: ProgressFn,
    cancel: CancelFn,
    emit: Callable[[SliceReady], None],
) -> Volume:
    """Load a stack, emitting each decoded slice as a :class:`SliceReady` carrying ``tag``."""
    return load_stack(
        stack,
        progress=progress,
        cancel=cancel,
        on_slice=lambda k, array: emit(SliceReady(tag, int(k), array)),
    )


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    if factor <= 1:
        return image
    h, w = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    image = image[:h, :w]
    shape = (h // factor, factor, w // factor, factor) + image.shape[2:]
    return image.reshape(shape).mean(axis=(1, 3))


def thumbnail_from_slice(
    slice_array: np.ndarray, window: tuple[float, float], invert: bool, size: int = THUMBNAIL_PIXELS
) -> np.ndarray:
    """A uint8 (gray, or RGB for colour) thumbnail at most ``size`` pixels on its long side."""
    factor = max(1, int(np.ceil(max(slice_array.shape[:2]) / size)))
    if slice_array.ndim == 3:
        small = _block_mean(slice_array.astype(np.float32), factor)
        return np.clip(small, 0, 255).astype(np.uint8)
    small = _block_mean(np.asarray(slice_array, dtype=np.float32), factor)
    shown = to_display(small, window[0], max(window[1], 1.0), invert)
    return (shown * 255.0 + 0.5).astype(np.uint8)


def middle_slice_stack(stack: Stack) -> Stack:
    """The same stack reduced to its middle slice (headers only; nothing is read)."""
    mid = stack.slices[len(stack.slices) // 2]
    return dataclasses.replace(stack, slices=[mid], distances=None, spacing=None, warnings=[])


def make_thumbnails(
    stacks: Sequence[Stack], *, progress: ProgressFn, cancel: CancelFn
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(stack_uid, thumbnail)`` for each stack, from its middle slice; unreadable stacks are passed."""
    total = len(stacks)
    for n, stack in enumerate(stacks):
        if cancel():
            return
        try:
            volume = load_stack(middle_slice_stack(stack), workers=1)
        except Exception:  # a stack that cannot be read shows its reason when opened, not here
            progress(n + 1, total, "thumbnails")
            continue
        yield stack.uid, thumbnail_from_slice(volume.array[0], volume.window, volume.invert)
        progress(n + 1, total, "thumbnails")
