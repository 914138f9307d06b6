"""HU volume → model input, in small steps (MONAI style: parameters in the constructor, pure work in the call).

Order of work for one series of shape ``(z, y, x)`` with spacing ``(dz, dy, dx)`` mm:

0. When the model was made with it, :class:`~viewer.model.hu_centring.HuCentring` gives one HU shift for the whole
   series (its soft-tissue median moved towards the training series'), added to every slab before the windows.
1. :class:`SlabAverage`: thin slices are averaged in HU into slabs of about the target thickness (default 5 mm),
   as a scanner reconstructs thick slices from thin ones, so one model serves 5 mm and 0.625 mm series. The
   :class:`SliceMapping` it returns ties every model slice to the original slices it came from.
2. :class:`ResizePad`: antialiased resize in-plane to ``size × size``, keeping the physical aspect (pixel spacing
   included) by padding with air.
3. :class:`WindowStack`: brain, subdural and bone windows as three channels, each clipped to [0, 1].

Averaging and resizing act on HU, before the (nonlinear) windows, as partial volume does in a scanner with
thicker slices or larger pixels; it also makes windowing 16× cheaper (128² instead of 512² per channel).

Every step runs on numpy (returns numpy) and on torch (returns torch, differentiable), so pixel saliency can be
carried back to the original HU slice at its own resolution: :meth:`Preprocessor.differentiable` runs the whole
chain on a tensor, and :meth:`Preprocessor.rebuild_model_slices` rebuilds only the model slices that some chosen
original slices feed (the lazy path the explanations use).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from viewer.errors import ViewerError
from viewer.model.config import DEFAULT_WINDOWS, ModelConfig
from viewer.model.hu_centring import HuCentring, soft_tissue_median

Array = np.ndarray
WINDOW_NAMES: tuple[str, ...] = ("brain 40/80", "subdural 80/200", "bone 600/2800")
AIR_HU = -1024.0

# Slices processed at once by the inference path: bounds memory to ~50 MB for 512² series.
_CHUNK = 16


def _as_tensor(data: Array | Tensor) -> tuple[Tensor, bool]:
    if isinstance(data, Tensor):
        return data, False
    return torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)), True


@dataclass(frozen=True, eq=False)
class SliceMapping:
    """Which original slices each model slice averages.

    Attributes
    ----------
    n_original:
        Slices in the original series.
    starts, stops:
        ``(n_model,)``: model slice ``j`` is the mean of original slices ``starts[j] : stops[j]``.
    source_spacing, spacing:
        Slice spacing of the original series and of the model slices (mm).
    """

    n_original: int
    starts: Array
    stops: Array
    source_spacing: float
    spacing: float

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SliceMapping):
            return NotImplemented
        return (
            self.n_original == other.n_original
            and np.array_equal(self.starts, other.starts)
            and np.array_equal(self.stops, other.stops)
            and self.source_spacing == other.source_spacing
            and self.spacing == other.spacing
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def n_model(self) -> int:
        return int(len(self.starts))

    @property
    def original_to_model(self) -> Array:
        """``(n_original,)`` int: the model slice each original slice belongs to."""
        return np.repeat(np.arange(self.n_model), self.stops - self.starts)

    @property
    def weights(self) -> Array:
        """``(n_original,)`` float32: the weight of each original slice in its model slice (1 / slab size)."""
        return np.repeat(1.0 / (self.stops - self.starts), self.stops - self.starts).astype(np.float32)

    def original_slices(self, model_index: int) -> range:
        """The original slices averaged into one model slice."""
        return range(int(self.starts[model_index]), int(self.stops[model_index]))

    def to_original(self, values: Array | Tensor, axis: int = -1) -> Array:
        """Spread per-model-slice values over the original slices (each original slice takes its slab's value)."""
        arr = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
        return np.take(arr, self.original_to_model, axis=axis)

    def averaging_matrix(self) -> Array:
        """``(n_model, n_original)`` float32 with the slab weights: ``model = A @ original``."""
        a = np.zeros((self.n_model, self.n_original), dtype=np.float32)
        for j, (s, e) in enumerate(zip(self.starts, self.stops, strict=True)):
            a[j, s:e] = 1.0 / (e - s)
        return a


class SlabAverage:
    """Average thin slices in HU into slabs of about ``target_spacing`` mm.

    ``k = round(target / dz)`` consecutive slices make one model slice (the last slab may hold fewer); series
    at or above the target spacing pass through unchanged (k = 1). Averaging whole slices keeps the mapping back
    to the original slices exact: 0.625 mm → 8 slices per 5 mm slab, 1.25 mm → 4, 2.5 mm → 2.

    Parameters
    ----------
    target_spacing:
        Slab thickness to aim for, in mm.
    """

    def __init__(self, target_spacing: float = 5.0) -> None:
        if target_spacing <= 0:
            raise ValueError("target_spacing must be positive")
        self.target_spacing = float(target_spacing)

    def mapping(self, n_slices: int, dz: float) -> SliceMapping:
        """The slab layout for ``n_slices`` slices spaced ``dz`` mm apart."""
        if n_slices < 1:
            raise ViewerError("Cannot prepare the series for the model", "it has no slices")
        if not np.isfinite(dz) or dz <= 0:
            raise ViewerError(
                "Cannot prepare the series for the model", f"slice spacing {dz!r} mm is not positive"
            )
        k = max(1, int(round(self.target_spacing / dz)))
        starts = np.arange(0, n_slices, k)
        stops = np.minimum(starts + k, n_slices)
        return SliceMapping(n_slices, starts, stops, float(dz), float(dz) * k)

    def __call__(self, volume: Array | Tensor, dz: float) -> tuple[Array | Tensor, SliceMapping]:
        """Average ``volume`` (z, ...) into slabs; returns the slabs (numpy in, numpy out) and the mapping."""
        mapping = self.mapping(int(volume.shape[0]), dz)
        if mapping.n_model == mapping.n_original:
            return volume, mapping
        if isinstance(volume, Tensor):
            return torch.stack(
                [volume[s:e].mean(0) for s, e in zip(mapping.starts, mapping.stops, strict=True)]
            ), mapping
        vol = np.asarray(volume, dtype=np.float32)
        means = [
            vol[s:e].mean(0, dtype=np.float64).astype(np.float32)
            for s, e in zip(mapping.starts, mapping.stops, strict=True)
        ]
        return np.stack(means), mapping


class WindowStack:
    """HU → one channel per window, each ``(HU − (c − w/2)) / w`` clipped to [0, 1].

    Parameters
    ----------
    windows:
        ``(center, width)`` pairs in HU; the default is brain 40/80, subdural 80/200, bone 600/2800, the usual
        three-window input of the head-CT hemorrhage literature.
    """

    def __init__(self, windows: Sequence[tuple[float, float]] = DEFAULT_WINDOWS) -> None:
        if not windows or any(w <= 0 for _, w in windows):
            raise ValueError("windows need positive widths")
        self.windows = tuple((float(c), float(w)) for c, w in windows)

    def __call__(self, hu: Array | Tensor) -> Array | Tensor:
        """``(..., y, x)`` HU → ``(..., channels, y, x)`` in [0, 1] (numpy in, numpy out)."""
        t, was_numpy = _as_tensor(hu)
        scale = torch.tensor([1.0 / w for _, w in self.windows], dtype=t.dtype, device=t.device)
        offset = torch.tensor([0.5 - c / w for c, w in self.windows], dtype=t.dtype, device=t.device)
        out = torch.addcmul(offset.view(-1, 1, 1), t.unsqueeze(-3), scale.view(-1, 1, 1)).clamp(0.0, 1.0)
        return out.numpy() if was_numpy else out


@dataclass(frozen=True)
class ResizeGeometry:
    """Where the resized image lies in the padded ``size × size`` frame."""

    in_shape: tuple[int, int]
    resized: tuple[int, int]
    offset: tuple[int, int]
    size: int


class ResizePad:
    """Antialiased bilinear resize to ``size × size``, keeping the physical aspect by padding.

    Parameters
    ----------
    size:
        Output side in pixels.
    antialias:
        Low-pass before downsampling (``F.interpolate(..., antialias=True)``), so thin structures are averaged
        rather than aliased away.
    fill:
        Value of the padding (air in HU by default).
    """

    def __init__(self, size: int = 128, antialias: bool = True, fill: float = AIR_HU) -> None:
        if size < 8:
            raise ValueError("size must be at least 8")
        self.size = int(size)
        self.antialias = antialias
        self.fill = float(fill)

    def geometry(
        self, shape: tuple[int, int], pixel_spacing: tuple[float, float] = (1.0, 1.0)
    ) -> ResizeGeometry:
        """Layout for an image of ``shape`` (y, x) with ``pixel_spacing`` (dy, dx) mm."""
        h, w = int(shape[0]), int(shape[1])
        extent_y, extent_x = h * float(pixel_spacing[0]), w * float(pixel_spacing[1])
        longest = max(extent_y, extent_x)
        new_h = max(1, min(self.size, int(round(self.size * extent_y / longest))))
        new_w = max(1, min(self.size, int(round(self.size * extent_x / longest))))
        offset = ((self.size - new_h) // 2, (self.size - new_w) // 2)
        return ResizeGeometry((h, w), (new_h, new_w), offset, self.size)

    def __call__(
        self, image: Array | Tensor, pixel_spacing: tuple[float, float] = (1.0, 1.0)
    ) -> Array | Tensor:
        """``(..., y, x)`` → ``(..., size, size)`` (numpy in, numpy out)."""
        t, was_numpy = _as_tensor(image)
        geo = self.geometry((t.shape[-2], t.shape[-1]), pixel_spacing)
        lead = t.shape[:-2]
        flat = t.reshape(-1, 1, *t.shape[-2:])
        if geo.resized != geo.in_shape:
            flat = F.interpolate(
                flat, size=geo.resized, mode="bilinear", align_corners=False, antialias=self.antialias
            )
        top, left = geo.offset
        bottom = self.size - geo.resized[0] - top
        right = self.size - geo.resized[1] - left
        if top or left or bottom or right:
            flat = F.pad(flat, (left, right, top, bottom), value=self.fill)
        out = flat.reshape(*lead, self.size, self.size)
        return out.numpy() if was_numpy else out


@dataclass
class Preprocessed:
    """One series ready for the model, plus what is needed to go back to the original slices.

    Attributes
    ----------
    tensor:
        ``(n_model, channels, size, size)`` float32, no gradient.
    mapping:
        Model slices ↔ original slices.
    hu:
        The original HU volume ``(z, y, x)`` (a reference, not a copy), for pixel saliency.
    spacing:
        ``(dz, dy, dx)`` mm of the original volume.
    preprocessor:
        The :class:`Preprocessor` that made ``tensor``.
    hu_shift:
        HU added to every voxel before the windows (the series' re-centring; 0 when none).
    hu_median:
        The soft-tissue median the shift was taken from (None without re-centring, or without soft tissue).
    """

    tensor: Tensor
    mapping: SliceMapping
    hu: Array
    spacing: tuple[float, float, float]
    preprocessor: Preprocessor = field(repr=False)
    hu_shift: float = 0.0
    hu_median: float | None = None

    @property
    def geometry(self) -> ResizeGeometry:
        return self.preprocessor.resize.geometry(self.hu.shape[1:], self.spacing[1:])


class Preprocessor:
    """The whole chain: slab averaging → resize/pad → windows.

    Parameters
    ----------
    size:
        In-plane side of the model input.
    windows:
        ``(center, width)`` pairs in HU, one channel each.
    target_spacing:
        Slab thickness in mm for thin series.
    antialias:
        See :class:`ResizePad`.
    centring:
        Per-series HU re-centring, or None to read the HU as they are.
    """

    def __init__(
        self,
        size: int = 128,
        windows: Sequence[tuple[float, float]] = DEFAULT_WINDOWS,
        target_spacing: float = 5.0,
        antialias: bool = True,
        centring: HuCentring | None = None,
    ) -> None:
        self.slabs = SlabAverage(target_spacing)
        self.window = WindowStack(windows)
        self.resize = ResizePad(size, antialias)
        self.centring = centring

    @classmethod
    def from_config(cls, config: ModelConfig) -> Preprocessor:
        """The preprocessing a model was built for."""
        return cls(config.input_size, config.windows, config.target_spacing_mm, centring=config.centring)

    def hu_shift(self, hu: Array | Tensor) -> float:
        """HU to add to this series before the windows (0 without re-centring)."""
        if self.centring is None:
            return 0.0
        data = hu.detach().cpu().numpy() if isinstance(hu, Tensor) else hu
        return self.centring.shift(data)

    @staticmethod
    def _check(hu: Array | Tensor, spacing: Sequence[float]) -> tuple[float, float, float]:
        if hu.ndim != 3:
            raise ValueError(f"expected a (z, y, x) volume, got shape {tuple(hu.shape)}")
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise ViewerError(
                "Cannot prepare the series for the model", f"spacing {tuple(spacing)} mm is not valid"
            )
        return float(spacing[0]), float(spacing[1]), float(spacing[2])

    def slice_transform(
        self, hu_slices: Tensor, pixel_spacing: tuple[float, float], hu_shift: float = 0.0
    ) -> Tensor:
        """Resize and windows for ``(..., y, x)`` HU slices → ``(..., channels, size, size)``; differentiable.

        ``hu_shift`` is added after the resize, where it costs a 16th of the work and changes nothing else
        (the resize is linear and keeps constants; the padding is air either way)."""
        resized = self.resize(hu_slices, pixel_spacing)
        if hu_shift:
            resized = resized + hu_shift
        return self.window(resized)  # type: ignore[return-value]

    def __call__(self, hu: Array, spacing: Sequence[float]) -> Preprocessed:
        """Prepare a volume for inference (no gradient; works in chunks to bound memory)."""
        dz, dy, dx = self._check(hu, spacing)
        if not np.all(np.isfinite(hu)):
            raise ViewerError(
                "Cannot prepare the series for the model", "the volume holds NaN or infinite values"
            )
        mapping = self.slabs.mapping(hu.shape[0], dz)
        median = soft_tissue_median(hu) if self.centring is not None else None
        shift = self.centring.shift_for(median) if self.centring is not None else 0.0
        chunks = []
        with torch.no_grad():
            for first in range(0, mapping.n_model, _CHUNK):
                js = range(first, min(first + _CHUNK, mapping.n_model))
                slabs = np.stack(
                    [
                        hu[mapping.starts[j] : mapping.stops[j]].mean(0, dtype=np.float64).astype(np.float32)
                        if mapping.stops[j] - mapping.starts[j] > 1
                        else np.asarray(hu[mapping.starts[j]], dtype=np.float32)
                        for j in js
                    ]
                )
                chunks.append(self.slice_transform(torch.from_numpy(slabs), (dy, dx), shift))
        return Preprocessed(torch.cat(chunks), mapping, hu, (dz, dy, dx), self, shift, median)

    def differentiable(self, hu: Tensor, spacing: Sequence[float]) -> tuple[Tensor, SliceMapping]:
        """The whole chain on a tensor, differentiable with respect to every original HU voxel.

        Memory grows with the whole volume (three channels at original resolution), so use it for small volumes
        and tests; explanations use :meth:`rebuild_model_slices`.
        """
        dz, dy, dx = self._check(hu, spacing)
        slabs, mapping = self.slabs(hu, dz)
        return self.slice_transform(slabs, (dy, dx), self.hu_shift(hu)), mapping  # type: ignore[arg-type]

    def rebuild_model_slices(
        self, inputs: Preprocessed, replacements: Mapping[int, Tensor]
    ) -> tuple[Array, Tensor]:
        """Rebuild, differentiably, the model slices fed by some original slices.

        Parameters
        ----------
        inputs:
            The prepared series.
        replacements:
            Original slice index → HU tensor ``(..., y, x)`` standing in for that slice (for instance a leaf with
            ``requires_grad``, the slice plus noise, or a point on an integration path). All share the same
            leading shape. The other slices of each touched slab come from ``inputs.hu`` as constants.

        Returns
        -------
        indices, tensor
            Sorted model slice indices ``J`` and their inputs ``(..., len(J), channels, size, size)``. The gradient
            of anything computed from them reaches each replacement at the original resolution.
        """
        if not replacements:
            raise ValueError("no original slices given")
        mapping = inputs.mapping
        owner = mapping.original_to_model
        weights = mapping.weights
        indices = np.unique([owner[i] for i in replacements])
        lead = next(iter(replacements.values())).shape[:-2]
        device = next(iter(replacements.values())).device
        slabs = []
        for j in indices:
            total: Tensor | float = 0.0
            for i in mapping.original_slices(int(j)):
                if i in replacements:
                    part = replacements[i]
                else:
                    part = torch.as_tensor(np.asarray(inputs.hu[i], dtype=np.float32), device=device)
                total = total + float(weights[i]) * part
            slabs.append(torch.as_tensor(total).expand(*lead, *inputs.hu.shape[1:]))
        stacked = torch.stack(slabs, dim=len(lead))
        return indices, self.slice_transform(stacked, inputs.spacing[1:], inputs.hu_shift)
