"""Explanations of one series' prediction, one function per method, all called ``fn(model, inputs, **opts)``.

- :func:`gate_traces`: the GRU's own account, update gate z and reset gate r per slice and direction.
- :func:`hidden_state_saliency`: each slice's hidden state's contribution to the study logit, against a normal
  reference series, per direction, split into the direct and the carried part.
- :func:`gradient_x_input`, :func:`smoothgrad`, :func:`integrated_gradients`: pixel saliency on chosen original
  slices, at the original image resolution (the gradient reaches the original HU slice through the windows,
  the resize and the slab average).

None of them switches the model to ``train()``: gradients come from :class:`~viewer.model.gated_gru.GatedGRU`,
which has a backward pass in any mode. The model must be in ``eval()`` mode (BatchNorm running statistics,
no dropout); a model in training mode is refused.

Gate convention (PyTorch's): ``h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}``, so z = 1 keeps the previous state.

The model-randomisation sanity check (Adebayo et al., 2018) is :func:`randomize_weights_cascading` plus
:func:`spearman_rank_correlation`, put together in :func:`randomisation_check`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from scipy import ndimage, stats
from torch import Tensor, nn

from viewer.model.gated_gru import GATE_LABELS
from viewer.model.map_scale import normalise_map
from viewer.model.network import NetOutput, SliceGRUNet
from viewer.model.preprocess import AIR_HU, Preprocessed, SliceMapping
from viewer.model.reference import reference_for_length

Target = Literal["study", "slice"]
Baseline = float | Literal["blur"]
SOFT_TISSUE_HU: tuple[float, float] = (-100.0, 300.0)
DIRECTIONS: tuple[str, str] = ("forward", "reverse")
DIRECTION_LABELS: dict[str, str] = {
    "forward": "forward direction (reads first slice → last)",
    "reverse": "reverse direction (reads last slice → first)",
}


@dataclass
class Explanation:
    """One method's explanation of one series, as plain numpy data.

    Attributes
    ----------
    method:
        Name of the method (the key in :data:`EXPLAINERS`).
    mapping:
        Model slices ↔ original slices; per-slice values are indexed by model slice.
    slice_values:
        Name → ``(n_model,)`` values per model slice (see :meth:`on_original_slices`).
    matrices:
        Name → ``(units, n_model)`` unit × slice matrices.
    pixel_maps:
        Original slice index → ``(y, x)`` signed attribution at the original resolution.
    labels:
        Name → what a plot should call it.
    params:
        The options used.
    """

    method: str
    mapping: SliceMapping
    slice_values: dict[str, np.ndarray] = field(default_factory=dict)
    matrices: dict[str, np.ndarray] = field(default_factory=dict)
    pixel_maps: dict[int, np.ndarray] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def on_original_slices(self, name: str) -> np.ndarray:
        """``slice_values[name]`` spread over the original slices."""
        return self.mapping.to_original(self.slice_values[name])

    def display_map(self, index: int, percentile: float = 99.5) -> np.ndarray:
        """``|attribution|`` of one original slice scaled to [0, 1] (values above ``percentile`` saturate)."""
        return normalise_map(self.pixel_maps[index], percentile)

    def as_vector(self) -> np.ndarray:
        """Everything this explanation says as one flat vector (pixel maps if any, else slice values)."""
        if self.pixel_maps:
            return np.concatenate([self.pixel_maps[k].ravel() for k in sorted(self.pixel_maps)])
        return np.concatenate([self.slice_values[k].ravel() for k in sorted(self.slice_values)])


@dataclass
class SequenceAnalysis:
    """Prediction plus the two sequence-level explanations from one forward pass (see :func:`analyse_sequence`)."""

    output: NetOutput
    gates: Explanation
    hidden_saliency: Explanation


def _device(model: SliceGRUNet) -> torch.device:
    return next(model.parameters()).device


def _require_eval(model: SliceGRUNet) -> None:
    if model.training:
        raise ValueError(
            "explanations need the model in eval() mode; train() would change BatchNorm and dropout "
            "(gradients work in eval mode: the GRU is GatedGRU, not cuDNN's)"
        )


def _require_gated_gru(model: SliceGRUNet, what: str) -> None:
    """Gate traces and the hidden-state track read the :class:`GatedGRU`'s trace; other sequences have none."""
    if not model.config.has_gated_gru:
        raise ValueError(
            f"{what} needs a model whose sequence part is the gated GRU (sequence 'bigru' or 'bigru_attn'); this "
            f"model's is {model.config.sequence!r} (an ablation variant, see viewer/model/ablation.py)"
        )


def _features(model: SliceGRUNet, inputs: Preprocessed, features: Tensor | None) -> Tensor:
    """``(1, n_model, feature_size)`` slice features without a graph."""
    if features is not None:
        return features.detach().reshape(1, inputs.mapping.n_model, -1).to(_device(model))
    with torch.no_grad():
        return model.encode(inputs.tensor.to(_device(model))).unsqueeze(0)


def gate_traces(
    model: SliceGRUNet, inputs: Preprocessed, *, output: NetOutput | None = None, layer: int = -1
) -> Explanation:
    """Update and reset gates per slice and direction of one GRU layer.

    Returns ``slice_values`` ``z_mean_forward``, ``z_mean_reverse``, ``r_mean_forward``, ``r_mean_reverse``
    (mean over units) and ``matrices`` ``z_*``, ``r_*``, ``h_*`` (units × slices). In PyTorch's convention z = 1
    KEEPS the previous state (the state of the slice before, in that direction's reading order).

    Parameters
    ----------
    output:
        A forward already run on ``inputs`` (saves running it again).
    layer:
        GRU layer, default the last.
    """
    _require_eval(model)
    _require_gated_gru(model, "the gate traces")
    if output is None:
        with torch.no_grad():
            output = model.forward_features(_features(model, inputs, None))
    expl = Explanation("gates", inputs.mapping, params={"layer": layer})
    for direction, states in zip(DIRECTIONS, output.trace.layers[layer], strict=False):
        for gate in ("z", "r", "h"):
            unit_by_slice = getattr(states, gate)[0].detach().cpu().numpy().T.astype(np.float32)
            expl.matrices[f"{gate}_{direction}"] = unit_by_slice
            expl.labels[f"{gate}_{direction}"] = f"{GATE_LABELS[gate]}, {DIRECTION_LABELS[direction]}"
            if gate != "h":
                expl.slice_values[f"{gate}_mean_{direction}"] = unit_by_slice.mean(0)
                expl.labels[f"{gate}_mean_{direction}"] = (
                    f"mean {GATE_LABELS[gate]}, {DIRECTION_LABELS[direction]}"
                )
    return expl


HiddenMethod = Literal["state_difference", "gradient_x_state", "sensitivity"]
HIDDEN_METHODS: tuple[str, ...] = ("state_difference", "gradient_x_state", "sensitivity")
DEFAULT_HIDDEN_METHOD: HiddenMethod = "state_difference"
HIDDEN_PARTS: tuple[str, ...] = ("direct", "carried")
_HIDDEN_PART_LABELS = {
    "direct": "direct: read by the head at this slice",
    "carried": "carried: passed on to later states",
}


class _SequencePart(nn.Module):
    """The GRU, slice head and pooling of a model (its ``forward_features``), for a float64 functional call."""

    def __init__(self, net: SliceGRUNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, features: Tensor) -> NetOutput:
        return self.net.forward_features(features)


def _forward_float64(model: SliceGRUNet, features: Tensor) -> NetOutput:
    """``model.forward_features`` in float64 (the model itself is not changed), recording a graph.

    In float32 the pooling weights ``softmax(r · slice logits)`` underflow to exactly 0 on slices far below the
    top slice, and every gradient through the head at such a slice with them; float64 keeps them.
    """
    params = {
        f"net.{name}": p.detach().double()
        for name, p in model.named_parameters()
        if not name.startswith("encoder.")
    }
    leaf = features.detach().double().requires_grad_(True)
    result: NetOutput = torch.func.functional_call(_SequencePart(model), params, (leaf,))
    return result


def _reference_series(model: SliceGRUNet, feats: Tensor) -> tuple[Tensor, str]:
    """``(1, n, F)`` reference features for a series of ``n`` slices, and what they are."""
    stored: Tensor = model.reference_features  # type: ignore[assignment]
    n = feats.shape[1]
    if stored.numel():
        return reference_for_length(stored.to(feats), n).unsqueeze(0), "normal-series reference"
    return feats.mean(1, keepdim=True).expand(-1, n, -1), "mean of this series' slice features (no reference)"


def hidden_state_saliency(
    model: SliceGRUNet,
    inputs: Preprocessed,
    *,
    output: NetOutput | None = None,
    method: HiddenMethod = DEFAULT_HIDDEN_METHOD,
    layer: int = -1,
) -> Explanation:
    """How much each slice's hidden state contributes to the study logit, per direction (in logit units).

    ``method="state_difference"`` (default; one-step conductance, Dhamdhere et al. 2018): per direction,
    ``(h_t(X) − h_t(R)) · ½ (∂y/∂h_t at X + ∂y/∂h_t at R)`` summed over the units, where ``y`` is the study
    logit, ``X`` the series and ``R`` the model's reference series (mean slice features of normal series by
    relative position, see :mod:`viewer.model.reference`; a model without one uses the series' own mean slice
    features, as ``params['reference']`` says). Positive values push the study towards a bleed. The values share
    one logit scale across all slices and series (no per-series scaling). Their sum over slices and directions
    approximates ``y(X) − y(R)`` (``params['logit_change']``); a one-step path overshoots it (docs/model.md
    gives the measured size).

    ``method="gradient_x_state"``: ``h_t · ∂y/∂h_t``. ``method="sensitivity"``: ``‖∂y/∂h_t‖₂``, which is not a
    contribution: in the forward direction every state before a finding feeds it and scores high.

    Everything is computed in float64 on a float64 copy of the GRU and head parameters.

    Returns
    -------
    Explanation
        ``slice_values``: ``forward``, ``reverse`` and ``combined`` (their sum; for ``sensitivity`` the norm over
        both directions' units), each also split into ``*_direct`` (the path through the head reading ``h_t``)
        and ``*_carried`` (the paths through the later states ``h_t`` feeds; total = direct + carried; for
        ``sensitivity`` only ``*_direct``, a norm). ``matrices['units_forward' | 'units_reverse']``: the
        per-unit terms (units × slices).

    Parameters
    ----------
    output:
        A forward already run on ``inputs``: its slice features are reused (the encoder does not run again).
    method:
        See above; one of :data:`HIDDEN_METHODS`.
    layer:
        GRU layer, default the last (for a lower layer, "direct" is the path through the layer above at ``t``).
    """
    _require_eval(model)
    _require_gated_gru(model, "the hidden-state track")
    if method not in HIDDEN_METHODS:
        raise ValueError(f"method must be one of {HIDDEN_METHODS}, got {method!r}")
    feats = output.features.detach() if output is not None else _features(model, inputs, None)
    feats = feats.reshape(1, inputs.mapping.n_model, -1)
    params: dict[str, Any] = {"method": method, "layer": layer}
    batch = feats
    if method == "state_difference":
        ref, params["reference"] = _reference_series(model, feats)
        batch = torch.cat([feats, ref.to(feats)])
    with torch.enable_grad():
        out = _forward_float64(model, batch)
        states = out.trace.layers[layer]
        steps = out.trace.steps[layer]
        study = out.study_logit.sum()  # the series in the batch are independent
        grads = torch.autograd.grad(study, [*steps, *(s.h for s in states)], allow_unused=True)
    n_dir = len(states)
    totals = [
        torch.zeros_like(s) if g is None else g for g, s in zip(grads[: len(steps)], steps, strict=True)
    ]
    total = torch.stack(totals, dim=2)  # (D, B, T, H) in each direction's reading order
    if n_dir == 2:
        total = torch.stack([total[0], total[1].flip(1)])
    direct = torch.stack(
        [torch.zeros_like(s.h) if g is None else g for g, s in zip(grads[len(steps) :], states, strict=True)]
    )
    h = torch.stack([s.h.detach() for s in states])  # (D, B, T, H)
    parts: dict[str, Tensor] = {}
    if method == "sensitivity":
        parts[""] = total[:, 0].norm(dim=-1)
        parts["_direct"] = direct[:, 0].norm(dim=-1)
        units = total[:, 0]
    else:
        if method == "state_difference":
            delta = h[:, 0] - h[:, 1]
            g_total, g_direct = 0.5 * (total[:, 0] + total[:, 1]), 0.5 * (direct[:, 0] + direct[:, 1])
        else:
            delta, g_total, g_direct = h[:, 0], total[:, 0], direct[:, 0]
        units = delta * g_total
        parts[""] = units.sum(-1)
        parts["_direct"] = (delta * g_direct).sum(-1)
        parts["_carried"] = parts[""] - parts["_direct"]
    study_logits = out.study_logit.detach()
    params["study_logit"] = float(study_logits[0])
    if method == "state_difference":
        params["reference_logit"] = float(study_logits[1])
        params["logit_change"] = float(study_logits[0] - study_logits[1])
    if method != "sensitivity":
        params["sum_of_contributions"] = float(parts[""].sum())
    expl = Explanation("hidden_saliency", inputs.mapping, params=params)
    what = {
        "state_difference": "contribution to the study logit (state vs normal reference)",
        "gradient_x_state": "h_t · ∂ study logit / ∂ h_t",
        "sensitivity": "|∂ study logit / ∂ h_t|",
    }[method]
    for suffix, values in parts.items():
        per_dir = values.cpu().numpy().astype(np.float64)  # (D, T)
        combined = np.linalg.norm(per_dir, axis=0) if method == "sensitivity" else per_dir.sum(0)
        part = suffix.lstrip("_")
        tail = f", {_HIDDEN_PART_LABELS[part]}" if part else ""
        expl.slice_values[f"combined{suffix}"] = combined
        expl.labels[f"combined{suffix}"] = f"{what}, both directions{tail}"
        for d, direction in enumerate(DIRECTIONS[:n_dir]):
            expl.slice_values[f"{direction}{suffix}"] = per_dir[d]
            expl.labels[f"{direction}{suffix}"] = f"{what}, {DIRECTION_LABELS[direction]}{tail}"
    for d, direction in enumerate(DIRECTIONS[:n_dir]):
        expl.matrices[f"units_{direction}"] = units[d].cpu().numpy().T
        expl.labels[f"units_{direction}"] = f"{what} per unit, {DIRECTION_LABELS[direction]}"
    return expl


def analyse_sequence(
    model: SliceGRUNet, inputs: Preprocessed, *, features: Tensor | None = None
) -> SequenceAnalysis:
    """One forward giving the prediction, the gate traces and the hidden-state saliency.

    The encoder runs without a graph (or not at all, given the slice ``features`` it already gave); only the GRU
    and the head record one, and the backward pass runs through them alone, so the explanations cost a fraction
    of the forward.
    """
    _require_eval(model)
    _require_gated_gru(model, "the sequence analysis")
    feats = _features(model, inputs, features)
    with torch.enable_grad():
        out = model.forward_features(feats)
        hidden = hidden_state_saliency(model, inputs, output=out)
    gates = gate_traces(model, inputs, output=out)
    return SequenceAnalysis(out.detach(), gates, hidden)


def _resolve_slices(
    model: SliceGRUNet, inputs: Preprocessed, slices: Iterable[int] | None, features: Tensor
) -> list[int]:
    if slices is None:
        with torch.no_grad():
            logits = model.forward_features(features).slice_logits[0]
        return list(inputs.mapping.original_slices(int(logits.argmax())))
    chosen = sorted({int(i) for i in slices})
    n = inputs.mapping.n_original
    if not chosen or chosen[0] < 0 or chosen[-1] >= n:
        raise ValueError(f"slices must be original slice indices in [0, {n})")
    return chosen


def _pixel_gradients(
    model: SliceGRUNet,
    inputs: Preprocessed,
    slices: Sequence[int],
    target: Target,
    points: Callable[[Tensor, Tensor, int, int], Tensor],
    n_points: int,
    batch: int,
    features: Tensor,
    baseline: Baseline = AIR_HU,
    blur_mm: float = 0.0,
) -> dict[int, np.ndarray]:
    """Mean gradient of the target over ``n_points`` points, for each chosen original slice.

    ``points(hu, base, first, count)`` gives ``(count, len(group), y, x)`` HU points for samples ``first`` …
    ``first + count − 1``, where ``hu`` and ``base`` are ``(len(group), y, x)``: the group's original slices and
    their baselines (see :func:`baseline_slice`). With ``target="study"``
    all slices go in one pass (the gradient of one scalar); with ``"slice"`` each model slice is its own pass,
    differentiating that slice's logit.
    """
    device = _device(model)
    owner = inputs.mapping.original_to_model
    if target == "study":
        groups = [list(slices)]
    elif target == "slice":
        by_model: dict[int, list[int]] = {}
        for i in slices:
            by_model.setdefault(int(owner[i]), []).append(i)
        groups = list(by_model.values())
    else:
        raise ValueError(f"target must be 'study' or 'slice', got {target!r}")
    result: dict[int, np.ndarray] = {}
    for group in groups:
        hu = torch.as_tensor(
            np.stack([np.asarray(inputs.hu[i], dtype=np.float32) for i in group]), device=device
        )
        base = torch.as_tensor(
            np.stack([baseline_slice(inputs, i, baseline, blur_mm) for i in group]), device=device
        )
        total = torch.zeros_like(hu)
        for first in range(0, n_points, batch):
            count = min(batch, n_points - first)
            with torch.enable_grad():
                leaf = points(hu, base, first, count).detach().requires_grad_(True)
                model_idx, x = inputs.preprocessor.rebuild_model_slices(
                    inputs, {i: leaf[:, k] for k, i in enumerate(group)}
                )
                new_feats = model.encode(x)  # (count, |J|, F)
                idx = torch.as_tensor(model_idx, device=device)
                feats = features.expand(count, -1, -1).index_copy(1, idx, new_feats)
                out = model.forward_features(feats)
                score = out.study_logit.sum() if target == "study" else out.slice_logits[:, idx].sum()
                (grad,) = torch.autograd.grad(score, leaf)
            total += grad.sum(0)
        mean = (total / n_points).cpu().numpy()
        for k, i in enumerate(group):
            result[i] = mean[k]
    return result


def baseline_slice(inputs: Preprocessed, index: int, baseline: Baseline, blur_mm: float = 8.0) -> np.ndarray:
    """The reference image an attribution of original slice ``index`` is taken against, ``(y, x)`` HU.

    ``baseline`` is a HU value (air, −1024, is black in every window) or ``"blur"``: soft tissue (−100 … 300 HU)
    smoothed by a Gaussian of ``blur_mm`` mm standard deviation (normalised within the soft tissue, so bone does
    not bleed into it), with bone and air kept as they are. Small hyperdense structures vanish from it while the
    head stays, so the attribution answers "what in this tissue differs from smooth tissue". Constant baselines
    let the skull dominate path methods: on the way from air to bone each skull pixel crosses the brain window,
    where the gradient is large (Sturmfels et al., 2020, "Visualizing the impact of feature attribution
    baselines"). Caution: ``input − blur`` is itself a detector of small hyperdensities, so with this baseline
    even a randomised model's maps point at bleeds; see :func:`integrated_gradients`.
    """
    hu = np.asarray(inputs.hu[index], dtype=np.float32)
    if baseline == "blur":
        sigma = (blur_mm / inputs.spacing[1], blur_mm / inputs.spacing[2])
        tissue = ((hu > SOFT_TISSUE_HU[0]) & (hu < SOFT_TISSUE_HU[1])).astype(np.float32)
        weight = ndimage.gaussian_filter(tissue, sigma, mode="constant")
        smooth = ndimage.gaussian_filter(hu * tissue, sigma, mode="constant") / np.maximum(weight, 1e-6)
        return np.where(tissue > 0, smooth, hu).astype(np.float32)
    if isinstance(baseline, str):
        raise ValueError(f"baseline must be a HU value or 'blur', got {baseline!r}")
    # The baseline is a value the model reads, after the series' HU re-centring: in the series' own HU it lies
    # that shift lower.
    return np.full_like(hu, float(baseline) - inputs.hu_shift)


def _baseline_text(baseline: Baseline, blur_mm: float) -> str:
    return f"a {blur_mm:g} mm blur" if baseline == "blur" else f"{float(baseline):g} HU"


def _difference_text(baseline: Baseline, blur_mm: float) -> str:
    """``input − baseline`` as a reader writes it: ``input + 1024 HU`` for the air baseline, not ``− -1024``."""
    if baseline == "blur" or float(baseline) >= 0:  # type: ignore[arg-type]
        return f"input − {_baseline_text(baseline, blur_mm)}"
    return f"input + {-float(baseline):g} HU"  # type: ignore[arg-type]


def gradient_x_input(
    model: SliceGRUNet,
    inputs: Preprocessed,
    *,
    slices: Iterable[int] | None = None,
    target: Target = "study",
    baseline: Baseline = AIR_HU,
    blur_mm: float = 8.0,
    features: Tensor | None = None,
) -> Explanation:
    """Gradient × (input − baseline) on original slices, at their own resolution.

    The input is in HU, where 0 is water and not "nothing", so the product is taken against a baseline (see
    :func:`baseline_slice`). Pixels outside all windows get no gradient (the windows clip).

    Parameters
    ----------
    slices:
        Original slice indices; default the original slices of the model slice with the highest logit.
    target:
        ``"study"`` differentiates the study logit, ``"slice"`` each slice's own logit.
    baseline, blur_mm:
        Reference image: a HU value or ``"blur"`` (see :func:`baseline_slice`).
    features:
        Slice features of ``inputs`` already computed (``model.encode``), to skip the encoder pass.
    """
    _require_eval(model)
    feats = _features(model, inputs, features)
    chosen = _resolve_slices(model, inputs, slices, feats)
    grads = _pixel_gradients(
        model, inputs, chosen, target, lambda hu, base, first, count: hu.unsqueeze(0), 1, 1, feats
    )
    expl = Explanation(
        "gradient_x_input",
        inputs.mapping,
        params={"slices": chosen, "target": target, "baseline": baseline, "blur_mm": blur_mm},
        labels={"pixel": f"gradient × ({_difference_text(baseline, blur_mm)}) of the {target} logit"},
    )
    for i, g in grads.items():
        diff = np.asarray(inputs.hu[i], dtype=np.float32) - baseline_slice(inputs, i, baseline, blur_mm)
        expl.pixel_maps[i] = (g * diff).astype(np.float32)
    return expl


def smoothgrad(
    model: SliceGRUNet,
    inputs: Preprocessed,
    *,
    slices: Iterable[int] | None = None,
    target: Target = "study",
    samples: int = 16,
    noise_hu: float = 20.0,
    seed: int = 0,
    batch: int = 8,
    features: Tensor | None = None,
) -> Explanation:
    """SmoothGrad (Smilkov et al., 2017): the gradient averaged over noisy copies of the chosen slices.

    Gaussian noise of ``noise_hu`` HU standard deviation is added to the chosen original slices only (the rest
    of the series stays as it is). The map is the mean signed gradient; :meth:`Explanation.display_map` shows its
    magnitude. Other parameters as :func:`gradient_x_input`; ``batch`` noisy copies run per pass.
    """
    _require_eval(model)
    if samples < 1:
        raise ValueError("samples must be at least 1")
    feats = _features(model, inputs, features)
    chosen = _resolve_slices(model, inputs, slices, feats)
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def noisy(hu: Tensor, base: Tensor, first: int, count: int) -> Tensor:
        noise = torch.randn((count, *hu.shape), generator=gen) * noise_hu
        return hu.unsqueeze(0) + noise.to(hu.device)

    grads = _pixel_gradients(model, inputs, chosen, target, noisy, samples, batch, feats)
    expl = Explanation(
        "smoothgrad",
        inputs.mapping,
        params={"slices": chosen, "target": target, "samples": samples, "noise_hu": noise_hu, "seed": seed},
        labels={"pixel": f"SmoothGrad of the {target} logit ({samples} samples, σ = {noise_hu:g} HU)"},
    )
    expl.pixel_maps.update({i: g.astype(np.float32) for i, g in grads.items()})
    return expl


def integrated_gradients(
    model: SliceGRUNet,
    inputs: Preprocessed,
    *,
    slices: Iterable[int] | None = None,
    target: Target = "study",
    steps: int = 16,
    baseline: Baseline = AIR_HU,
    blur_mm: float = 8.0,
    batch: int = 8,
    features: Tensor | None = None,
) -> Explanation:
    """Integrated gradients (Sundararajan et al., 2017) on the chosen slices.

    The chosen original slices move along the straight path from their baseline to their values (midpoint
    rule, ``steps`` points); the rest of the series stays as it is. So the attributions add up (as ``steps``
    grows) to the target's change when the chosen slices are replaced by their baselines. Other parameters as
    :func:`gradient_x_input`.

    Both baselines have a known weakness on CT, measured on synthetic bleeds (a small model trained to slice
    AUROC 1.0, pointing game over 37 bleed slices): from air the skull takes the largest attributions (pointing
    game 0.0); from ``"blur"`` the maps point at the bleed (1.0) but so do those of the fully randomised model
    (0.97), because ``input − baseline`` alone already outlines small hyperdensities. Judge IG only together
    with its randomised-model control. (Gradient × input from air and SmoothGrad: 1.0 trained, 0.0 randomised.)
    """
    _require_eval(model)
    if steps < 1:
        raise ValueError("steps must be at least 1")
    feats = _features(model, inputs, features)
    chosen = _resolve_slices(model, inputs, slices, feats)

    def path(hu: Tensor, base: Tensor, first: int, count: int) -> Tensor:
        alphas = (torch.arange(first, first + count, dtype=hu.dtype, device=hu.device) + 0.5) / steps
        return base.unsqueeze(0) + alphas.view(-1, 1, 1, 1) * (hu - base).unsqueeze(0)

    grads = _pixel_gradients(model, inputs, chosen, target, path, steps, batch, feats, baseline, blur_mm)
    expl = Explanation(
        "integrated_gradients",
        inputs.mapping,
        params={"slices": chosen, "target": target, "steps": steps, "baseline": baseline, "blur_mm": blur_mm},
        labels={
            "pixel": f"integrated gradients of the {target} logit from {_baseline_text(baseline, blur_mm)} "
            f"({steps} steps)"
        },
    )
    for i, g in grads.items():
        diff = np.asarray(inputs.hu[i], dtype=np.float32) - baseline_slice(inputs, i, baseline, blur_mm)
        expl.pixel_maps[i] = (g * diff).astype(np.float32)
    return expl


def pointing_game(explanation: Explanation, masks: Mapping[int, np.ndarray], tolerance_px: int = 2) -> float:
    """Fraction of explained slices whose largest ``|attribution|`` lies on the lesion (Zhang et al., 2018).

    Parameters
    ----------
    explanation:
        A pixel explanation.
    masks:
        Original slice index → boolean lesion mask ``(y, x)``; slices without a lesion pixel are skipped.
    tolerance_px:
        The mask is dilated by this many pixels first (the usual allowance for a peak on the lesion's rim).

    Returns NaN when no explained slice has a lesion. Compare against a randomised model
    (:func:`randomize_weights_cascading`): a method whose randomised maps also hit is not explaining the model.
    """
    hits = []
    for index, attribution in explanation.pixel_maps.items():
        mask = masks.get(index)
        if mask is None or not np.any(mask):
            continue
        if tolerance_px > 0:
            mask = ndimage.binary_dilation(mask, iterations=tolerance_px)
        peak = np.unravel_index(int(np.argmax(np.abs(attribution))), attribution.shape)
        hits.append(bool(mask[peak]))
    return float(np.mean(hits)) if hits else float("nan")


Explainer = Callable[..., Explanation]

#: Every method by name; each is called ``fn(model, inputs, **opts)``.
EXPLAINERS: dict[str, Explainer] = {
    "gates": gate_traces,
    "hidden_saliency": hidden_state_saliency,
    "gradient_x_input": gradient_x_input,
    "smoothgrad": smoothgrad,
    "integrated_gradients": integrated_gradients,
}
PIXEL_METHODS: tuple[str, ...] = ("gradient_x_input", "smoothgrad", "integrated_gradients")

#: The pixel saliency the viewer shows and the report prints, and which logit it explains. Chosen by the pointing
#: game on held-out phantoms against a fully randomised model (see the model card and docs/model.md).
DEFAULT_PIXEL_METHOD = "gradient_x_input"
DEFAULT_PIXEL_TARGET: Target = "slice"


def randomize_weights_cascading(model: SliceGRUNet, upto_layer: str | int, seed: int = 0) -> SliceGRUNet:
    """A copy of ``model`` with its blocks re-initialised from the output down to ``upto_layer`` (inclusive).

    Cascading model-parameter randomisation (Adebayo et al., 2018): a saliency method that explains the model
    must give visibly different maps once the learned weights are gone. The blocks, top down, are
    :meth:`SliceGRUNet.layer_names_top_down` (``slice_head``, ``gru``, encoder stages, ``encoder.stem``); each is
    re-initialised with its own initialiser (BatchNorm's running statistics included). The original model is
    not touched, and the copy is in eval mode.

    Parameters
    ----------
    upto_layer:
        A block name, or how many blocks from the top to randomise (≥ 1).
    seed:
        Seed of the re-initialisation (the global RNG state is left as it was).
    """
    names = model.layer_names_top_down()
    if isinstance(upto_layer, int):
        if not 1 <= upto_layer <= len(names):
            raise ValueError(f"upto_layer must be in [1, {len(names)}]")
        count = upto_layer
    elif upto_layer in names:
        count = names.index(upto_layer) + 1
    else:
        raise ValueError(f"unknown layer {upto_layer!r}; expected one of {names}")
    rand = copy.deepcopy(model).eval()
    with torch.random.fork_rng(devices=[]):
        for k, name in enumerate(names[:count]):
            torch.manual_seed(seed + k)
            for module in rand.get_submodule(name).modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
    return rand


def spearman_rank_correlation(
    a: np.ndarray, b: np.ndarray, absolute: bool = True, ignore_common_zeros: bool = True
) -> float:
    """Spearman rank correlation of two maps (flattened); of their magnitudes when ``absolute``.

    ``ignore_common_zeros`` leaves out the positions where both maps are exactly 0: pixels the windows clip
    (air, outside the field of view) have no gradient under any weights, and thousands of shared tied zeros
    would push the correlation towards 1 whatever the model learned. Returns NaN when a map is constant.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"maps differ in size: {x.size} vs {y.size}")
    if absolute:
        x, y = np.abs(x), np.abs(y)
    if ignore_common_zeros:
        keep = (x != 0) | (y != 0)
        x, y = x[keep], y[keep]
    if x.size < 2:
        return float("nan")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def randomisation_check(
    model: SliceGRUNet,
    inputs: Preprocessed,
    method: str = "gradient_x_input",
    *,
    seed: int = 0,
    absolute: bool = True,
    **opts: Any,
) -> dict[str, float]:
    """Spearman correlation between the model's explanation and that of cascadingly randomised copies.

    Returns block name → correlation after randomising every block from the top down to it. A method that
    passes the sanity check shows correlations well below 1 (Adebayo et al. read > ~0.5 as a warning sign).
    Pixel methods are compared on the same original slices.
    """
    fn = EXPLAINERS[method]
    reference = fn(model, inputs, **opts)
    if reference.pixel_maps and "slices" not in opts:
        opts = {**opts, "slices": sorted(reference.pixel_maps)}
    result: dict[str, float] = {}
    for name in model.layer_names_top_down():
        rand = randomize_weights_cascading(model, name, seed=seed)
        result[name] = spearman_rank_correlation(
            reference.as_vector(), fn(rand, inputs, **opts).as_vector(), absolute=absolute
        )
    return result
