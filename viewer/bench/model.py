"""Timings of the model core, as plain dicts (milliseconds unless the key says otherwise).

``make bench`` prints them; nothing here asserts a budget. Each figure is the median of ``repeats`` runs after
two warm-up runs, on whatever device and thread count torch is set to.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from viewer.errors import ViewerError
from viewer.model.card import default_model_paths, read_card
from viewer.model.config import ModelConfig
from viewer.model.explanations import (
    DEFAULT_PIXEL_METHOD,
    DEFAULT_PIXEL_TARGET,
    EXPLAINERS,
    analyse_sequence,
    gate_traces,
    hidden_state_saliency,
)
from viewer.model.gated_gru import GatedGRU
from viewer.model.network import SliceGRUNet
from viewer.model.preprocess import Preprocessor


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def _paired_median_ms(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median times of ``a`` and ``b`` measured alternately, so a change of machine load hits both alike."""
    for fn in (a, b, a, b):
        fn()
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, into in ((a, times_a), (b, times_b)):
            start = time.perf_counter()
            fn()
            into.append(time.perf_counter() - start)
    return float(np.median(times_a) * 1e3), float(np.median(times_b) * 1e3)


def bench_gru(
    seq_len: int = 300, input_size: int = 128, hidden_size: int = 96, repeats: int = 15, seed: int = 0
) -> dict[str, float]:
    """:class:`GatedGRU` against ``nn.GRU`` (same weights) on a ``(1, seq_len, input_size)`` sequence, bidirectional.

    Keys: ``nn_gru_ms``/``gated_gru_ms`` (inference), ``*_fwd_bwd_ms`` (forward and backward), their ratios, and
    ``max_abs_diff`` between the two outputs.
    """
    torch.manual_seed(seed)
    ref = torch.nn.GRU(input_size, hidden_size, bidirectional=True, batch_first=True).eval()
    ours = GatedGRU(input_size, hidden_size, bidirectional=True, batch_first=True).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(1, seq_len, input_size)

    def infer(module: torch.nn.Module) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return module(x)

        return run

    def fwd_bwd(module: torch.nn.Module) -> Callable[[], object]:
        xg = x.clone().requires_grad_(True)

        def run() -> object:
            module(xg)[0].square().sum().backward()
            return None

        return run

    with torch.no_grad():
        diff = float((ref(x)[0] - ours(x).output).abs().max())
    nn_ms, gated_ms = _paired_median_ms(infer(ref), infer(ours), repeats)
    nn_fb_ms, gated_fb_ms = _paired_median_ms(fwd_bwd(ref), fwd_bwd(ours), repeats)
    out = {
        "nn_gru_ms": nn_ms,
        "gated_gru_ms": gated_ms,
        "nn_gru_fwd_bwd_ms": nn_fb_ms,
        "gated_gru_fwd_bwd_ms": gated_fb_ms,
        "max_abs_diff": diff,
    }
    out["ratio"] = out["gated_gru_ms"] / out["nn_gru_ms"]
    out["fwd_bwd_ratio"] = out["gated_gru_fwd_bwd_ms"] / out["nn_gru_fwd_bwd_ms"]
    return out


def bench_encoder_layout(
    config: ModelConfig | None = None, batch: int = 32, repeats: int = 7, seed: int = 0
) -> dict[str, float]:
    """The slice CNN in PyTorch's default layout against channels-last (what it uses), on ``batch`` slices.

    Keys: ``*_train_ms`` (forward, backward and an AdamW step, as in training's slice stage) and ``*_infer_ms``, per
    layout, their ratios (channels-last over default) and ``max_abs_diff`` between the two layouts' features.
    """
    config = config or ModelConfig()
    torch.manual_seed(seed)
    base = SliceGRUNet(config).encoder
    x = torch.rand(batch, len(config.windows), config.input_size, config.input_size)
    layouts = {"default": torch.contiguous_format, "channels_last": torch.channels_last}
    encoders = {}
    for name, layout in layouts.items():
        encoders[name] = copy.deepcopy(base)
        encoders[name].memory_format = layout

    def train(encoder: torch.nn.Module) -> Callable[[], object]:
        encoder.train()
        opt = torch.optim.AdamW(encoder.parameters(), lr=1e-6)

        def run() -> object:
            opt.zero_grad()
            encoder(x).square().mean().backward()
            opt.step()
            return None

        return run

    def infer(encoder: torch.nn.Module) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return encoder.eval()(x)

        return run

    with torch.inference_mode():
        a, b = (e.eval()(x) for e in encoders.values())
        diff = float((a - b).abs().max())
    out: dict[str, float] = {}
    for kind, make in (("infer", infer), ("train", train)):
        plain, last = _paired_median_ms(make(encoders["default"]), make(encoders["channels_last"]), repeats)
        out[f"default_{kind}_ms"], out[f"channels_last_{kind}_ms"] = plain, last
        out[f"{kind}_ratio"] = last / plain
    out["max_abs_diff"] = diff
    return out


def _synthetic_series(slices: int, matrix: int, seed: int) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A crude head-like HU volume (skull ring, brain, one bright blob) for timing only."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:matrix, :matrix].astype(np.float32)
    r = np.hypot(yy - matrix / 2, xx - matrix / 2) / (matrix / 2)
    base = np.where(r < 0.8, 35.0, np.where(r < 0.88, 1200.0, -1000.0)).astype(np.float32)
    vol = np.repeat(base[None], slices, axis=0) + rng.normal(0, 5, (slices, matrix, matrix)).astype(
        np.float32
    )
    vol[slices // 2, matrix // 3 : matrix // 3 + 8, matrix // 2 : matrix // 2 + 8] = 75.0
    return vol, (5.0, 0.45, 0.45)


def bench_forward(
    slice_counts: tuple[int, ...] = (32, 300),
    config: ModelConfig | None = None,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Inference time of :class:`SliceGRUNet` on model-ready input (preprocessing excluded).

    Keys ``forward_<n>_ms`` per slice count, plus ``encoder_300_ms``-style splits of encoder and sequence part.
    """
    torch.manual_seed(seed)
    model = SliceGRUNet(config).eval()
    size = model.config.input_size
    out: dict[str, float] = {}
    for n in slice_counts:
        x = torch.rand(n, model.config.in_channels, size, size)
        with torch.inference_mode():
            feats = model.encode(x).unsqueeze(0)
            out[f"forward_{n}_ms"] = _median_ms(lambda x=x: model(x), repeats)
            out[f"encoder_{n}_ms"] = _median_ms(lambda x=x: model.encode(x), repeats)
            out[f"sequence_{n}_ms"] = _median_ms(lambda f=feats: model.forward_features(f), repeats)
    out["parameters"] = float(sum(p.numel() for p in model.parameters()))
    return out


def bench_explanations(
    slices: int = 300,
    matrix: int = 512,
    config: ModelConfig | None = None,
    repeats: int = 5,
    seed: int = 0,
    pixel_all: bool = True,
    device: str = "cpu",
) -> dict[str, float]:
    """Cost of the explanations against the plain forward, on a synthetic ``slices × matrix²`` series of 5 mm slices.

    Keys: ``preprocess_ms``; ``forward_ms`` (inference only); ``analyse_ms`` (forward + gates + hidden-state
    saliency in one pass, :func:`analyse_sequence`); ``sequence_plain_ms`` and ``sequence_explained_ms``: the part
    after the encoder without and with the gates and the backward pass for hidden-state saliency;
    ``explain_extra_ratio`` = (sequence_explained − sequence_plain) / forward, the extra cost as a multiple of the
    forward (measured on the sequence part alone, where it arises, so encoder timing noise does not swamp it);
    ``analyse_ratio`` = analyse / forward; ``pixel_one_ms``: the default pixel saliency of one original slice
    (encoder features given); ``pixel_all_s``: the same for every slice, one after the other (once), and
    ``pixel_all_ratio`` its multiple of the forward.
    """
    torch.manual_seed(seed)
    model = SliceGRUNet(config).eval().to(device)
    hu, spacing = _synthetic_series(slices, matrix, seed)
    prep = Preprocessor.from_config(model.config)
    inputs = prep(hu, spacing)
    x = inputs.tensor.to(device)
    with torch.no_grad():
        feats = model.encode(x)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def forward() -> object:
        with torch.inference_mode():
            out = model(x)
        sync()
        return out

    def sequence_plain() -> object:
        with torch.inference_mode():
            out = model.forward_features(feats.unsqueeze(0))
        sync()
        return out

    def sequence_explained() -> object:
        out = model.forward_features(feats.unsqueeze(0))
        hidden = hidden_state_saliency(model, inputs, output=out)
        return gate_traces(model, inputs, output=out), hidden

    pixel = EXPLAINERS[DEFAULT_PIXEL_METHOD]

    def pixel_one(index: int) -> object:
        return pixel(model, inputs, slices=[index], target=DEFAULT_PIXEL_TARGET, features=feats)

    forward_ms, analyse_ms = _paired_median_ms(forward, lambda: analyse_sequence(model, inputs), repeats)
    plain_ms, explained_ms = _paired_median_ms(sequence_plain, sequence_explained, repeats)
    out = {
        "preprocess_ms": _median_ms(lambda: prep(hu, spacing), repeats),
        "forward_ms": forward_ms,
        "analyse_ms": analyse_ms,
        "sequence_plain_ms": plain_ms,
        "sequence_explained_ms": explained_ms,
        "pixel_one_ms": _median_ms(lambda: pixel_one(slices // 2), repeats),
    }
    out["explain_extra_ratio"] = (out["sequence_explained_ms"] - out["sequence_plain_ms"]) / out["forward_ms"]
    out["analyse_ratio"] = out["analyse_ms"] / out["forward_ms"]
    if pixel_all:
        start = time.perf_counter()
        for index in range(slices):
            pixel_one(index)
        out["pixel_all_s"] = time.perf_counter() - start
        out["pixel_all_ratio"] = out["pixel_all_s"] * 1e3 / out["forward_ms"]
    return out


def shipped_config() -> ModelConfig:
    """The architecture and input size of the shipped weights (from their card), so the figures are the app's;
    the defaults of :class:`ModelConfig` when the card cannot be read."""
    try:
        return read_card(default_model_paths().card).config
    except ViewerError:
        return ModelConfig()


def run_all(quick: bool = False) -> dict[str, dict[str, float]]:
    """Every benchmark; ``quick`` uses fewer repeats and slices (for a smoke run). Adds CUDA runs when present.

    The network is the shipped one's shape with random weights: timing does not depend on the weights' values.
    """
    cfg = shipped_config()
    if quick:
        return {
            "gru_h96": bench_gru(seq_len=64, repeats=3),
            "encoder_layout": bench_encoder_layout(replace(cfg, input_size=64), batch=8, repeats=2),
            "forward": bench_forward((8, 32), config=cfg, repeats=2),
            "explanations_32": bench_explanations(slices=32, matrix=128, config=cfg, repeats=2),
        }
    results = {
        "gru_h64": bench_gru(hidden_size=64),
        "gru_h96": bench_gru(hidden_size=96),
        "gru_h128": bench_gru(hidden_size=128),
        "encoder_layout": bench_encoder_layout(cfg),
        "forward": bench_forward(config=cfg),
        "explanations_32": bench_explanations(slices=32, config=cfg),
        "explanations_300": bench_explanations(slices=300, config=cfg, repeats=3),
    }
    if torch.cuda.is_available():
        results["cuda_explanations_32"] = bench_explanations(slices=32, config=cfg, device="cuda")
        results["cuda_explanations_300"] = bench_explanations(
            slices=300, config=cfg, repeats=3, device="cuda"
        )
    return results
