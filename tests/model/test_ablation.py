"""The ablation (issue #14): the sequence variants, the unchanged default, the bootstrap and a tiny run end to end."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from viewer.cli import build_parser
from viewer.model.ablation import (
    VARIANTS,
    occlusion_track,
    parameter_counts,
    run_ablation,
    variant_config,
)
from viewer.model.card import card_path_for, card_to_markdown, default_model_paths, read_card
from viewer.model.config import ModelConfig
from viewer.model.explanations import analyse_sequence, gate_traces, hidden_state_saliency
from viewer.model.metrics import auroc, bootstrap_ci
from viewer.model.network import SliceGRUNet
from viewer.model.preprocess import Preprocessor
from viewer.model.reference import reference_path_for
from viewer.model.training import TrainSettings
from viewer.model.weights import load_weights, save_weights

SMALL = ModelConfig(input_size=32, encoder_channels=(8, 16), hidden_size=8)


def _model(variant: str, seed: int = 0) -> SliceGRUNet:
    torch.manual_seed(seed)
    return SliceGRUNet(variant_config(SMALL, variant)).eval()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_variant_maps_series_to_slice_and_study_logits(variant):
    model = _model(variant)
    out = model(torch.randn(2, 7, 3, 32, 32))
    assert out.slice_logits.shape == (2, 7)
    assert out.study_logit.shape == (2,)
    assert out.features.shape == (2, 7, SMALL.feature_size)
    state = SMALL.feature_size if variant == "pool" else 2 * SMALL.hidden_size
    assert out.hidden.shape == (2, 7, state)
    assert bool(torch.isfinite(out.study_logit).all())
    assert len(out.trace.layers) == (
        VARIANTS[variant].get("num_layers", 1) if variant.startswith("bigru") else 0
    )


def test_study_logit_follows_the_pooling_of_each_variant():
    feats = torch.randn(1, 9, SMALL.feature_size)
    for variant in VARIANTS:
        model = _model(variant)
        out = model.forward_features(feats)
        lse = (torch.logsumexp(5.0 * out.slice_logits, -1) - np.log(9)) / 5.0
        if variant == "bigru_attn":
            assert not torch.allclose(out.study_logit, lse)
            weights = model.attention.weights(out.hidden)
            torch.testing.assert_close(weights.sum(-1), torch.ones(1))
        else:
            torch.testing.assert_close(out.study_logit, lse)


def test_pool_variant_has_no_recurrence_each_slice_alone():
    model = _model("pool")
    feats = torch.randn(1, 6, SMALL.feature_size)
    changed = feats.clone()
    changed[0, 2] += 3.0
    a, b = model.forward_features(feats).slice_logits, model.forward_features(changed).slice_logits
    moved = (a - b).abs()[0] > 1e-7
    assert moved.tolist() == [False, False, True, False, False, False]
    assert (
        _model("bigru").forward_features(feats).slice_logits
        - _model("bigru").forward_features(changed).slice_logits
    ).abs()[0].gt(1e-7).sum() > 1


def test_parameter_counts_differ_between_variants():
    counts = {v: parameter_counts(_model(v)) for v in VARIANTS}
    assert len({c["sequence"] for c in counts.values()}) == len(VARIANTS)
    assert len({c["encoder"] for c in counts.values()}) == 1
    assert counts["pool"]["sequence"] == SMALL.feature_size + 1
    assert counts["pool"]["sequence"] < counts["bigru"]["sequence"] < counts["bigru_attn"]["sequence"]
    assert counts["bigru"]["sequence"] < counts["bilstm"]["sequence"] < counts["bigru2"]["sequence"]
    assert all(c["total"] == c["encoder"] + c["sequence"] for c in counts.values())


def test_default_config_and_card_are_unchanged():
    assert ModelConfig().sequence == "bigru"
    assert "sequence" not in ModelConfig().to_dict()
    assert variant_config(ModelConfig(), "bigru") == ModelConfig()
    assert ModelConfig.from_dict(ModelConfig().to_dict()) == ModelConfig()
    assert variant_config(SMALL, "bilstm").to_dict()["sequence"] == "bilstm"
    with pytest.raises(ValueError, match="sequence must be one of"):
        ModelConfig(sequence="transformer")
    paths = default_model_paths()
    card = read_card(paths.card)
    assert card.config.sequence == "bigru"
    # The shipped card, read and written again, is the same bytes (no new keys for the default).
    text = json.dumps(card.to_dict(), indent=2, ensure_ascii=False) + "\n"
    assert text == paths.card.read_text(encoding="utf-8")
    assert card_to_markdown(card) == paths.card.with_name("slice_gru_default.card.md").read_text()


def test_shipped_weights_load_save_as_they_were_and_compute_the_bigru(tmp_path):
    model, card = load_weights(default_model_paths().weights)
    # Saved again, the shipped weights are the same tensors under the same names (the bytes differ only in the
    # order safetensors writes its metadata in, which varies from run to run).
    save_weights(model, tmp_path / "again.safetensors", name=card.name, version=card.version)
    shipped, again = (
        load_file(str(default_model_paths().weights)),
        load_file(str(tmp_path / "again.safetensors")),
    )
    assert list(shipped) == list(again)
    assert all(torch.equal(shipped[k], again[k]) and shipped[k].dtype == again[k].dtype for k in shipped)
    # The default path is still GRU → slice head → log-mean-exp; checked against torch's own fused GRU.
    reference = torch.nn.GRU(
        card.config.feature_size, card.config.hidden_size, bidirectional=True, batch_first=True
    )
    reference.load_state_dict(
        {k.removeprefix("gru."): v for k, v in model.state_dict().items() if k.startswith("gru.")}
    )
    feats = torch.randn(1, 11, card.config.feature_size, generator=torch.Generator().manual_seed(14))
    with torch.no_grad():
        out = model.forward_features(feats)
        slice_logits = model.slice_head(reference(feats)[0]).squeeze(-1)
    torch.testing.assert_close(out.slice_logits, slice_logits, atol=1e-5, rtol=1e-5)
    r = card.config.lse_sharpness
    lse = (torch.logsumexp(r * slice_logits, -1) - np.log(11)) / r
    torch.testing.assert_close(out.study_logit, lse, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["bigru2", "bigru_attn", "bilstm", "pool"])
def test_variant_weights_round_trip_through_the_card(tmp_path, variant):
    model = _model(variant, seed=3)
    path = tmp_path / f"{variant}.safetensors"
    save_weights(model, path, name=variant, version="0")
    loaded, card = load_weights(path)
    assert card.config == model.config
    feats = torch.randn(1, 5, SMALL.feature_size)
    torch.testing.assert_close(
        loaded.forward_features(feats).study_logit, model.forward_features(feats).study_logit
    )
    md = card_to_markdown(card)
    assert ("LSTM" in md) == (variant == "bilstm") and ("attention" in md) == (variant == "bigru_attn")


def _inputs(n: int = 5):
    prep = Preprocessor.from_config(SMALL)
    hu = np.random.default_rng(0).normal(30, 20, (n, 40, 40)).astype(np.float32)
    return prep(hu, (5.0, 0.8, 0.8))


@pytest.mark.parametrize("variant", ["pool", "bilstm"])
def test_explanations_refuse_variants_without_the_gated_gru(variant):
    model, inputs = _model(variant), _inputs()
    for explain in (gate_traces, hidden_state_saliency, analyse_sequence):
        with pytest.raises(ValueError, match=f"sequence part is the gated GRU.*'{variant}'"):
            explain(model, inputs)


@pytest.mark.parametrize("variant", ["bigru2", "bigru_attn"])
def test_explanations_still_work_on_the_gru_variants(variant):
    result = analyse_sequence(_model(variant), _inputs())
    assert result.hidden_saliency.slice_values["combined"].shape == (5,)
    assert result.gates.matrices["z_forward"].shape == (SMALL.hidden_size, 5)


def test_occlusion_track_is_zero_where_the_stand_in_equals_the_slice():
    feats = torch.randn(6, SMALL.feature_size)
    for variant in VARIANTS:
        track = occlusion_track(_model(variant), feats, feats[3])
        assert track.shape == (6,)
        assert track[3] == pytest.approx(0.0, abs=1e-6)
        assert np.abs(np.delete(track, 3)).max() > 0


def test_bootstrap_interval_holds_the_estimate_and_repeats_for_a_seed():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 40)
    scores = labels + rng.normal(0, 1.0, labels.size)

    def stat(idx):
        return auroc(labels[idx], scores[idx])

    point = stat(np.arange(labels.size))
    low, high = bootstrap_ci(stat, labels.size, rounds=300, seed=7)
    assert low < point < high
    assert 0.5 < low and high < 1.0
    assert bootstrap_ci(stat, labels.size, rounds=300, seed=7) == (low, high)
    assert bootstrap_ci(stat, labels.size, rounds=300, seed=8) != (low, high)
    narrower = bootstrap_ci(stat, labels.size, rounds=300, seed=7, level=0.5)
    assert low < narrower[0] < narrower[1] < high
    assert bootstrap_ci(lambda idx: float("nan"), 5, rounds=10) != bootstrap_ci(stat, 5, rounds=10)
    with pytest.raises(ValueError):
        bootstrap_ci(stat, 0)


def test_cli_offers_every_variant():
    parser = build_parser()
    args = parser.parse_args(
        ["ablation", "--model", "m.safetensors", "--data", "d", "--val", "v", "--out", "o"]
    )
    assert args.variants == list(VARIANTS)
    assert args.seeds == [0, 1]
    with pytest.raises(SystemExit):
        parser.parse_args(
            ["ablation", "--model", "m", "--data", "d", "--val", "v", "--out", "o", "--variants", "cnn"]
        )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 6-study 128² phantom folder and a copy of the shipped model (its card gets the ablation section)."""
    from viewer.synth.dataset import write_phantom_dataset

    root = tmp_path_factory.mktemp("ablation")
    write_phantom_dataset(root / "data", studies=6, seed=5, matrix=128)
    paths = default_model_paths()
    model = root / "model" / paths.weights.name
    model.parent.mkdir()
    for source in (paths.weights, paths.card, reference_path_for(paths.weights)):
        shutil.copy(source, model.parent / source.name)
    return root, model


@pytest.fixture
def one_thread():
    """Tiny batches on a shared 2-core machine: two torch threads wait on each other far longer than they work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tiny_ablation_end_to_end_and_resumes(tiny, one_thread):
    root, model = tiny
    lines: list[str] = []
    kwargs = {
        "seeds": (0,),
        "settings": replace(TrainSettings(), sequence_epochs=1),
        "rounds": 50,
        "timing_series": 1,
        "series_cache": root / "series",
        "log": lines.append,
    }
    result = run_ablation(model, [root / "data"], root / "data", root / "out", update_card=True, **kwargs)
    report = json.loads(result.json_path.read_text())
    rows = {v["variant"]: v for v in report["val"]["variants"]}
    assert list(rows) == list(VARIANTS)
    for variant, row in rows.items():
        for metric in ("study_auroc", "slice_auroc", "occlusion_track_auroc"):
            m = row["metrics"][metric]
            assert 0.0 <= m["value"] <= 1.0
            assert m["low"] <= m["value"] + 1e-9 and m["value"] <= m["high"] + 1e-9
        assert row["parameters"]["encoder"] == rows["pool"]["parameters"]["encoder"]
        assert row["cpu_seconds_per_series"]["model"] > row["cpu_seconds_per_series"]["sequence"] > 0
        assert ("delta_vs_bigru" in row) == (variant != "bigru")
        assert ("state_difference_track_auroc" in row["metrics"]) == variant.startswith("bigru")
    assert report["val"]["series"] == 6
    assert len({r["parameters"]["sequence"] for r in rows.values()}) == len(VARIANTS)
    assert sorted(p.name for p in (root / "out" / "runs").glob("*.json")) == sorted(
        f"{v}-seed0.json" for v in VARIANTS
    )
    assert list((root / "out" / "features").glob("*/*.safetensors"))
    markdown = result.markdown_path.read_text()
    assert "| bigru2: " in markdown and "Occlusion track" in markdown and "Held-out" not in markdown
    card = read_card(card_path_for(model))
    assert card.ablation["rows"][0][0].startswith("pool")
    assert f"Training data: {report['setup']['train']}. Validation: " in card.ablation["description"]
    assert (
        "## Ablation"
        in card_path_for(model).with_name(model.name.replace(".safetensors", ".card.md")).read_text()
    )
    load_weights(model)  # the weights are untouched: their hash still matches the card

    # A second call finds every run done and trains nothing; a held-out folder is scored only then, apart.
    lines.clear()
    again = run_ablation(
        model, [root / "data"], root / "data", root / "out", held_out=root / "data", **kwargs
    )
    assert not any("epoch" in line for line in lines)
    assert sum("skipped" in line for line in lines) == len(VARIANTS)
    assert any("warning: 6 held-out series are also training or validation series" in line for line in lines)
    assert again.report["val"]["variants"] == report["val"]["variants"]
    assert again.report["held_out"]["series"] == 6
    assert "## Held-out" in again.markdown_path.read_text()
