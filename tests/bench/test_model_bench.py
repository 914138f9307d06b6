"""The benchmark functions run and report timings (printed, never asserted)."""

from __future__ import annotations

from viewer.bench import model as bench
from viewer.model.card import default_model_paths, read_card
from viewer.model.config import ModelConfig

TINY = ModelConfig(input_size=32, encoder_channels=(8, 16, 32), hidden_size=8)


def test_bench_functions_return_timings():
    gru = bench.bench_gru(seq_len=12, input_size=8, hidden_size=8, repeats=1)
    forward = bench.bench_forward((4,), config=TINY, repeats=1)
    expl = bench.bench_explanations(slices=6, matrix=48, config=TINY, repeats=1)
    layout = bench.bench_encoder_layout(TINY, batch=4, repeats=1)
    print(gru, forward, expl, layout)
    assert layout["max_abs_diff"] <= 1e-4  # the two layouts compute the same features
    assert {"default_train_ms", "channels_last_train_ms", "train_ratio", "infer_ratio"} <= set(layout)
    assert gru["max_abs_diff"] <= 1e-5
    assert {"nn_gru_ms", "gated_gru_ms", "ratio", "fwd_bwd_ratio"} <= set(gru)
    assert {"forward_4_ms", "encoder_4_ms", "sequence_4_ms", "parameters"} <= set(forward)
    assert {"preprocess_ms", "forward_ms", "analyse_ms", "pixel_one_ms", "explain_extra_ratio"} <= set(expl)
    assert {"pixel_all_s", "pixel_all_ratio", "analyse_ratio"} <= set(expl)
    assert {"sequence_plain_ms", "sequence_explained_ms"} <= set(expl)
    assert all(v > 0 for d in (gru, forward, layout) for k, v in d.items() if k.endswith("_ms"))


def test_model_figures_are_taken_on_the_shipped_architecture():
    assert bench.shipped_config() == read_card(default_model_paths().card).config
