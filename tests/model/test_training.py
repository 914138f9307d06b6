"""Training, resuming, evaluating and the train/evaluate commands, on small phantoms with a small network."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from viewer.cli import main
from viewer.errors import CancelledError, ViewerError
from viewer.model import feature_cache, metrics, training, workflow
from viewer.model.card import current_card, read_card, sha256_file, write_card
from viewer.model.config import ModelConfig
from viewer.model.dataset import find_labelled, prepare_series, read_labels
from viewer.model.evaluation import evaluate_series, format_metrics
from viewer.model.hu_centring import soft_tissue_median
from viewer.model.preprocess import Preprocessor
from viewer.model.reference import REFERENCE_POSITIONS
from viewer.model.training import Trainer, TrainSettings
from viewer.model.weights import load_weights
from viewer.model.workflow import evaluate_folder, portable_command, split_validation, train_from_folders
from viewer.synth.dataset import write_phantom_dataset

SMALL = ModelConfig(input_size=32, encoder_channels=(8, 16), hidden_size=8)
QUICK = TrainSettings(encoder_epochs=2, sequence_epochs=2, finetune_epochs=1, batch_slices=32)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("training")
    write_phantom_dataset(root / "train", studies=6, seed=11, matrix=64)
    write_phantom_dataset(root / "val", studies=4, seed=12, matrix=64)
    return root / "train", root / "val"


def _prepared(folder: Path, cache: Path):
    items, missing = find_labelled(folder, read_labels(folder / "labels.json"))
    assert not missing
    series, failed = prepare_series(items, Preprocessor.from_config(SMALL), SMALL.input_size, cache)
    assert not failed
    return items, series


# ---------------------------------------------------------------------------------------------------------------
# Metrics


def _assert_same_weights(state: dict, expected: dict) -> None:
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(state[key], value, rtol=1e-5, atol=1e-6)


def test_auroc_matches_pairwise_counting():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounding makes ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert metrics.auroc(labels, scores) == pytest.approx(pairs)
    assert metrics.auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert metrics.auroc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert np.isnan(metrics.auroc([1, 1], [0.2, 0.3]))


def test_sensitivity_specificity_calibration_and_threshold():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.6, 0.4, 0.8, 0.9])
    assert metrics.sensitivity_specificity(labels, probs, 0.5) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert metrics.expected_calibration_error([1, 0], [1.0, 0.0]) == 0.0
    assert metrics.expected_calibration_error([1, 1], [0.5, 0.5]) == pytest.approx(0.5)
    threshold = metrics.youden_threshold(labels, probs)
    sens, spec = metrics.sensitivity_specificity(labels, probs, threshold)
    assert sens + spec - 1 == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------------------------------------------
# Labels


def test_labels_csv_json_and_refusals(tmp_path: Path):
    (tmp_path / "l.csv").write_text("series_uid,label\n1.2.3,1\n1.2.4,0\n")
    labels = read_labels(tmp_path / "l.csv")
    assert [(lab.series_uid, lab.label, lab.slice_labels_by_sop) for lab in labels] == [
        ("1.2.3", 1, None),
        ("1.2.4", 0, None),
    ]
    (tmp_path / "bad.csv").write_text("uid,diagnosis\n1.2.3,1\n")
    with pytest.raises(ViewerError, match="series_uid and label"):
        read_labels(tmp_path / "bad.csv")
    (tmp_path / "l.json").write_text(
        json.dumps({"studies": [{"series_uid": "1", "label": 1, "mask": "../x.npz"}]})
    )
    with pytest.raises(ViewerError, match="leaves"):
        read_labels(tmp_path / "l.json")
    (tmp_path / "two.json").write_text(json.dumps({"studies": [{"series_uid": "1", "label": 2}]}))
    with pytest.raises(ViewerError, match="0 or 1"):
        read_labels(tmp_path / "two.json")


def test_prepared_series_follow_the_labels_by_sop(datasets, tmp_path: Path):
    train, _ = datasets
    items, series = _prepared(train, tmp_path / "cache")
    for item, s in zip(items, series, strict=True):
        assert s.hu.dtype == np.float16 and s.hu.shape[1:] == (32, 32)
        assert s.has_slice_labels
        assert int(s.slice_labels.max()) == item.label.label
    again = _prepared(train, tmp_path / "cache")[1]  # from the cache
    assert all(np.array_equal(a.hu, b.hu) for a, b in zip(series, again, strict=True))


def test_split_validation_is_stratified_and_seeded(datasets, tmp_path: Path):
    _, series = _prepared(datasets[0], tmp_path / "cache")
    train, val = split_validation(series, 0.3, seed=1)
    assert {s.label for s in val} == {0, 1}
    assert {s.series_uid for s in train}.isdisjoint(s.series_uid for s in val)
    assert [s.series_uid for s in val] == [s.series_uid for s in split_validation(series, 0.3, seed=1)[1]]


# ---------------------------------------------------------------------------------------------------------------
# Training


def test_training_resumes_to_the_same_weights(datasets, tmp_path: Path):
    train_series = _prepared(datasets[0], tmp_path / "cache")[1]
    val_series = _prepared(datasets[1], tmp_path / "cache")[1]
    whole = Trainer(SMALL, QUICK, train_series, val_series, tmp_path / "a.safetensors").run()
    assert [(r.stage, r.epoch) for r in whole.history] == [
        ("encoder", 0),
        ("encoder", 1),
        ("sequence", 0),
        ("sequence", 1),
        ("finetune", 0),
    ]
    assert 0.0 < whole.threshold < 1.0

    calls = {"n": 0}

    def cancel_in_sequence_stage() -> bool:
        calls["n"] += 1
        return any(r.stage == "sequence" for r in interrupted.history)

    interrupted = Trainer(
        SMALL, QUICK, train_series, val_series, tmp_path / "b.safetensors", cancel=cancel_in_sequence_stage
    )
    with pytest.raises(CancelledError):
        interrupted.run()
    assert [r.stage for r in interrupted.history] == ["encoder", "encoder", "sequence"]
    resumed = Trainer(SMALL, QUICK, train_series, val_series, tmp_path / "b.safetensors").run()
    assert len(resumed.history) == 5
    _assert_same_weights(resumed.model.state_dict(), whole.model.state_dict())


def test_a_frozen_encoder_reads_each_series_once_and_a_feature_cache_spares_the_next_run(
    datasets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    train_series = _prepared(datasets[0], tmp_path / "cache")[1]
    val_series = _prepared(datasets[1], tmp_path / "cache")[1]
    encoded: list[tuple[str, bool]] = []
    real = feature_cache.encode_series

    def counting(model, window, series, mirrored=False):
        encoded.append((series.series_uid, mirrored))
        return real(model, window, series, mirrored)

    monkeypatch.setattr(feature_cache, "encode_series", counting)
    monkeypatch.setattr(training, "encode_series", counting)
    init = (
        Trainer(SMALL, QUICK, train_series, val_series, tmp_path / "init.safetensors")
        .run()
        .model.state_dict()
    )
    sequence_only = replace(QUICK, encoder_epochs=0, finetune_epochs=0, sequence_epochs=3)

    def run(name: str, cache: Path | None):
        encoded.clear()
        trainer = Trainer(
            SMALL, sequence_only, train_series, val_series, tmp_path / name, init=init, feature_cache=cache
        )
        result = trainer.run()
        trainer.reference_features([s for s in train_series if s.label == 0])
        return result

    plain = run("plain.safetensors", None)
    # Three epochs validated and a threshold chosen, yet each series read once per orientation.
    assert Counter(encoded) == Counter(
        [(s.series_uid, m) for s in train_series for m in (False, True)]
        + [(s.series_uid, False) for s in val_series]
    )
    first = run("first.safetensors", tmp_path / "features")
    assert len(list((tmp_path / "features").rglob("*.safetensors"))) == len(train_series)
    second = run("second.safetensors", tmp_path / "features")
    assert Counter(encoded) == Counter(
        (s.series_uid, False) for s in val_series
    )  # training features from disk
    for result in (first, second):
        _assert_same_weights(result.model.state_dict(), plain.model.state_dict())
        assert result.threshold == pytest.approx(plain.threshold)


def test_checkpoint_of_another_run_is_not_resumed(datasets, tmp_path: Path):
    train_series = _prepared(datasets[0], tmp_path / "cache")[1]
    val_series = _prepared(datasets[1], tmp_path / "cache")[1]
    settings = TrainSettings(encoder_epochs=1, sequence_epochs=1, finetune_epochs=0, batch_slices=32)
    Trainer(SMALL, settings, train_series, val_series, tmp_path / "c.safetensors").run()
    messages: list[str] = []
    other = TrainSettings(encoder_epochs=1, sequence_epochs=1, finetune_epochs=0, batch_slices=32, seed=5)
    result = Trainer(
        SMALL, other, train_series, val_series, tmp_path / "c.safetensors", log=messages.append
    ).run()
    assert any("different run" in m for m in messages)
    assert len(result.history) == 2


def test_train_writes_weights_and_card_that_load(datasets, tmp_path: Path):
    out = tmp_path / "model" / "small.safetensors"
    card = train_from_folders(
        [datasets[0]], out, val_data=datasets[1], settings=QUICK, config=SMALL, cache=tmp_path / "cache"
    )
    model, loaded = load_weights(out)
    assert loaded.sha256 == card.sha256
    assert model.config.operating_threshold == pytest.approx(card.operating_threshold)
    assert "seed 11" in card.training_data and card.training["validation"]
    assert (out.parent / "small.card.md").read_text().startswith("# Model card: slice_gru")


def test_evaluate_updates_the_card_with_the_printed_numbers(datasets, tmp_path: Path, capsys):
    out = tmp_path / "m.safetensors"
    train_from_folders([datasets[0]], out, val_data=datasets[1], settings=QUICK, config=SMALL)
    assert main(["evaluate", "--model", str(out), "--data", str(datasets[1]), "--update-card", "-q"]) == 0
    printed = capsys.readouterr().out
    card = read_card(tmp_path / "m.card.json")
    assert format_metrics(card.metrics) in printed
    assert card.metrics["studies"] == 4 and card.metrics["studies_with_bleed"] == 2
    assert card.metrics["pointing_slices"] > 0
    assert 0.0 <= card.metrics["pointing_game"] <= 1.0
    assert "seed 12" in card.evaluation["data"]
    report, _, _ = evaluate_folder(out, datasets[1])
    assert report.metrics == pytest.approx(card.metrics, nan_ok=True)


def test_train_command_and_its_errors(datasets, tmp_path: Path, capsys):
    out = tmp_path / "cli.safetensors"
    args = ["train", "--data", str(datasets[0]), "--val", str(datasets[1]), "--out", str(out), "-q"]
    args += ["--encoder-epochs", "1", "--sequence-epochs", "1", "--finetune-epochs", "0", "--device", "cpu"]
    assert main([*args, "--patience", "3"]) == 0
    assert out.is_file() and (tmp_path / "cli.card.json").is_file()
    training = read_card(tmp_path / "cli.card.json").training
    assert training["settings"]["patience"] == 3
    assert training["command"] == (
        "gru-viewer train --data DIR --val DIR --out FILE -q --encoder-epochs 1 --sequence-epochs 1 "
        "--finetune-epochs 0 --device cpu --patience 3"
    )
    assert (
        "torch " in training["hardware"] and " core" in training["hardware"] and training["epoch_seconds"] > 0
    )
    assert "Hardware: CPU" in (tmp_path / "cli.card.md").read_text()
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(out), "-q"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "none.safetensors"), "--data", str(datasets[1])]) == 1


def test_training_validates_on_several_folders_pooled(datasets, tmp_path: Path, capsys, monkeypatch):
    seen: dict[str, int] = {}
    original = Trainer.__init__

    def spy(self, config, settings, train, val, *args, **kwargs):
        seen["val"], seen["train"] = len(val), len(train)
        seen["lr"] = settings.lr_encoder
        original(self, config, settings, train, val, *args, **kwargs)

    monkeypatch.setattr(Trainer, "__init__", spy)
    out = tmp_path / "two_val.safetensors"
    args = ["train", "--data", str(datasets[0]), "--val", str(datasets[1]), "--val", str(datasets[0])]
    args += ["--out", str(out), "-q", "--encoder-epochs", "1", "--sequence-epochs", "1"]
    args += ["--finetune-epochs", "0"]
    assert main([*args, "--encoder-lr", "0.0005", "--device", "cpu"]) == 0
    assert seen == {"val": 4 + 6, "train": 6, "lr": 0.0005}
    training = read_card(tmp_path / "two_val.card.json").training
    assert "seed 12" in training["validation_data"] and "seed 11" in training["validation_data"]
    assert training["settings"]["lr_encoder"] == 0.0005
    assert main([*args, "--val-labels", str(datasets[1] / "labels.json"), "--fresh"]) == 1
    assert "one labels file per validation folder" in capsys.readouterr().err


def test_train_makes_a_chosen_sequence_kind_fresh_only(datasets, tmp_path: Path, capsys):
    out = tmp_path / "stacked.safetensors"
    args = ["train", "--data", str(datasets[0]), "--val", str(datasets[1]), "--out", str(out), "-q"]
    args += ["--encoder-epochs", "1", "--sequence-epochs", "1", "--finetune-epochs", "0", "--device", "cpu"]
    assert main([*args, "--sequence", "bigru2", "--input-size", "64"]) == 0
    card = read_card(tmp_path / "stacked.card.json")
    assert card.config.sequence == "bigru" and card.config.num_layers == 2 and card.config.input_size == 64
    again = ["train", "--data", str(datasets[0]), "--out", str(tmp_path / "b.safetensors"), "-q"]
    assert main([*again, "--init", str(out), "--sequence", "bilstm"]) == 1
    assert "--sequence is for a fresh network" in capsys.readouterr().err


def test_train_makes_a_chosen_encoder_width_fresh_only(datasets, tmp_path: Path, capsys):
    out = tmp_path / "wide.safetensors"
    args = ["train", "--data", str(datasets[0]), "--val", str(datasets[1]), "--out", str(out), "-q"]
    args += ["--encoder-epochs", "1", "--sequence-epochs", "1", "--finetune-epochs", "0", "--device", "cpu"]
    assert main([*args, "--encoder-channels", "8,12,24", "--input-size", "64"]) == 0
    card = read_card(tmp_path / "wide.card.json")
    assert card.config.encoder_channels == (8, 12, 24) and card.config.input_size == 64
    assert "channels 8, 12, 24" in (tmp_path / "wide.card.md").read_text()
    model = load_weights(out, tmp_path / "wide.card.json")[0]
    assert model.encoder.stem[0].out_channels == 8 and len(model.encoder.stages) == 2
    again = ["train", "--data", str(datasets[0]), "--out", str(tmp_path / "b.safetensors"), "-q"]
    assert main([*again, "--init", str(out), "--encoder-channels", "16,32"]) == 1
    assert "--encoder-channels is for a fresh network" in capsys.readouterr().err
    assert main([*again, "--encoder-channels", "8,16,32,64,128,256,512,1024"]) == 1
    assert "--input-size 192 must be divisible by 2**8" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*again, "--encoder-channels", "8,x"])
    assert "not a comma-separated list of whole numbers" in capsys.readouterr().err


def test_evaluation_scores_a_labelled_folder(datasets, tmp_path: Path):
    out = tmp_path / "e.safetensors"
    train_from_folders([datasets[0]], out, val_data=datasets[1], settings=QUICK, config=SMALL)
    model, card = load_weights(out)
    items, _ = find_labelled(datasets[1], read_labels(datasets[1] / "labels.json"))
    report = evaluate_series(model, items, threshold=card.operating_threshold)
    assert len(report.outcomes) == 4 and not report.failed
    for outcome in report.outcomes:
        assert outcome.slice_probabilities.shape == outcome.hidden_saliency.shape
        assert np.all(np.isfinite(outcome.hidden_saliency))
        assert outcome.hidden_randomised is not None
        assert outcome.hidden_randomised.shape == outcome.hidden_saliency.shape
        np.testing.assert_allclose(
            outcome.hidden_parts["forward"] + outcome.hidden_parts["reverse"], outcome.hidden_saliency
        )
    for key in (
        "hidden_saliency_auroc",
        "hidden_carried_magnitude_forward",
        "hidden_saliency_randomised_spearman",
    ):
        assert key in report.metrics
    assert len(outcome.pointing_hits) == (int(outcome.slice_labels.sum()) if outcome.label else 0)
    assert 0.0 <= report.metrics["hidden_carried_magnitude_forward"] <= 1.0


def test_carried_share_is_a_share_of_magnitudes_even_when_contributions_cancel():
    from viewer.model.evaluation import SeriesOutcome, summarise

    def outcome(direct: list[float], carried: list[float]) -> SeriesOutcome:
        d, c = np.asarray(direct), np.asarray(carried)
        parts = {"forward": d + c, "forward_direct": d, "forward_carried": c}
        parts |= {f"reverse{k[7:]}": v for k, v in parts.items()}
        return SeriesOutcome("1.2", 1, 0.9, np.array([1.0, 1.0, 0.0]), np.zeros(3), d + c, parts)

    # Signed sums: carried 1.0 - 0.9 = 0.1 over a total of 0.1 - 0.2 = -0.1, a "share" of -1.
    cancelling = [outcome([0.5, -0.8, 9.0], [1.0, -0.9, 9.0])]
    share = summarise(cancelling, 0.5)["hidden_carried_magnitude_forward"]
    assert share == pytest.approx(1.9 / 3.2)  # the normal slice's 9s are not counted
    nothing = [outcome([0.0, 0.0, 1.0], [0.0, 0.0, 1.0])]
    assert np.isnan(summarise(nothing, 0.5)["hidden_carried_magnitude_reverse"])


def test_training_can_continue_from_trained_weights(datasets, tmp_path: Path):
    first = tmp_path / "first.safetensors"
    parent = train_from_folders([datasets[0]], first, val_data=datasets[1], settings=QUICK, config=SMALL)
    more = TrainSettings(encoder_epochs=0, sequence_epochs=0, finetune_epochs=1, batch_slices=32)
    card = train_from_folders(
        [datasets[1]], tmp_path / "second.safetensors", val_data=datasets[1], settings=more, init=first
    )
    assert card.config.encoder_channels == SMALL.encoder_channels  # the parent's architecture wins
    assert card.training["initialised_from"]["sha256"] == parent.sha256
    assert card.training_data.startswith(parent.training_data) and "further trained" in card.training_data
    assert card.sha256 != parent.sha256
    assert card.training["data"] == [card.training_data.split("; then further trained on ")[-1]]
    markdown = (tmp_path / "second.card.md").read_text()
    assert (
        "### Run 2" in markdown
        and f"Started from run 1's weights (0.1.0, sha256 {parent.sha256[:12]}" in markdown
    )


def test_hu_centring_is_learnt_from_the_training_series_and_kept_by_continued_training(
    datasets, tmp_path: Path, monkeypatch
):
    seen: list[list] = []
    original = workflow.Trainer

    def recording(config, settings, train, val, *args, **kwargs):
        seen.append(list(train))
        return original(config, settings, train, val, *args, **kwargs)

    monkeypatch.setattr(workflow, "Trainer", recording)
    first = tmp_path / "first.safetensors"
    card = train_from_folders(
        [datasets[0]], first, val_data=datasets[1], settings=QUICK, config=SMALL, hu_tolerance=0.0
    )
    reference = card.config.hu_reference
    assert reference is not None and 20.0 < reference < 45.0 and card.config.hu_tolerance == 0.0
    medians = [soft_tissue_median(s.hu) for s in seen[0]]
    assert np.mean(medians) == pytest.approx(reference, abs=0.5)  # each series read at the reference
    assert max(abs(m - reference) for m in medians) < 1.0
    more = TrainSettings(encoder_epochs=0, sequence_epochs=0, finetune_epochs=1, batch_slices=32)
    second = train_from_folders(
        [datasets[1]], tmp_path / "second.safetensors", val_data=datasets[1], settings=more, init=first
    )
    assert second.config.hu_reference == reference
    assert load_weights(tmp_path / "second.safetensors")[0].config.centring is not None


def test_continued_training_can_read_slices_at_a_larger_size(datasets, tmp_path: Path):
    first = tmp_path / "first.safetensors"
    parent = train_from_folders([datasets[0]], first, val_data=datasets[1], settings=QUICK, config=SMALL)
    larger = replace(SMALL, input_size=2 * SMALL.input_size, hidden_size=SMALL.hidden_size + 4)
    more = TrainSettings(encoder_epochs=1, sequence_epochs=0, finetune_epochs=0, batch_slices=32)
    out = tmp_path / "larger.safetensors"
    card = train_from_folders(
        [datasets[1]], out, val_data=datasets[1], settings=more, init=first, config=larger
    )
    assert card.config.input_size == larger.input_size  # the size asked for wins...
    assert card.config.hidden_size == SMALL.hidden_size  # ...the rest of the architecture is the parent's
    assert card.training["initialised_from"]["input_size"] == SMALL.input_size
    model, _ = load_weights(out)
    parent_model, _ = load_weights(first)
    assert model.config.input_size == larger.input_size
    assert not torch.equal(model.encoder.stem[0].weight, parent_model.encoder.stem[0].weight)
    assert torch.equal(model.slice_head.weight, parent_model.slice_head.weight)  # only the encoder stage ran
    assert parent.config.input_size == SMALL.input_size


def _scripted_validation(trainer: Trainer, scores: list[float], snapshots: list[dict]) -> None:
    """Make ``trainer`` see the given study AUROCs, one per epoch, and keep its weights at each validation."""
    original = trainer._validate

    def validate(stage: str) -> dict[str, float]:
        snapshots.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
        return {"study_auroc": scores.pop(0), "slice_auroc": 0.5} if scores else original(stage)

    trainer._validate = validate  # type: ignore[method-assign]


def test_early_stopping_keeps_the_best_epoch_and_resumes_the_same(datasets, tmp_path: Path):
    train_series = _prepared(datasets[0], tmp_path / "cache")[1]
    val_series = _prepared(datasets[1], tmp_path / "cache")[1]
    settings = TrainSettings(
        encoder_epochs=0, sequence_epochs=6, finetune_epochs=0, batch_slices=32, patience=2
    )
    messages: list[str] = []
    whole = Trainer(
        SMALL, settings, train_series, val_series, tmp_path / "a.safetensors", log=messages.append
    )
    snapshots: list[dict] = []
    _scripted_validation(whole, [0.70, 0.90, 0.80, 0.85, 0.99, 0.99], snapshots)
    result = whole.run()
    # Epoch 2 is the best; epochs 3 and 4 do not beat it, so the stage stops there and keeps epoch 2.
    assert [r.epoch for r in result.history] == [0, 1, 2, 3]
    assert any("keeping epoch 2" in m for m in messages)
    _assert_same_weights(result.model.state_dict(), snapshots[1])
    assert any(not torch.equal(snapshots[3][k], v) for k, v in snapshots[1].items())

    # Interrupted after epoch 3, then resumed: the best weights and the count come back from the checkpoint.
    interrupted = Trainer(
        SMALL,
        settings,
        train_series,
        val_series,
        tmp_path / "b.safetensors",
        cancel=lambda: len(interrupted.history) >= 3,
    )
    _scripted_validation(interrupted, [0.70, 0.90, 0.80], [])
    with pytest.raises(CancelledError):
        interrupted.run()
    resumed = Trainer(SMALL, settings, train_series, val_series, tmp_path / "b.safetensors")
    _scripted_validation(resumed, [0.85], [])
    again = resumed.run()
    assert [r.epoch for r in again.history] == [0, 1, 2, 3]
    _assert_same_weights(again.model.state_dict(), result.model.state_dict())


def test_without_patience_every_epoch_runs_and_the_last_weights_stay(datasets, tmp_path: Path):
    train_series = _prepared(datasets[0], tmp_path / "cache")[1]
    val_series = _prepared(datasets[1], tmp_path / "cache")[1]
    settings = TrainSettings(encoder_epochs=0, sequence_epochs=3, finetune_epochs=0, batch_slices=32)
    trainer = Trainer(SMALL, settings, train_series, val_series, tmp_path / "c.safetensors")
    snapshots: list[dict] = []
    _scripted_validation(trainer, [0.9, 0.5, 0.4], snapshots)
    result = trainer.run()
    assert len(result.history) == 3
    _assert_same_weights(result.model.state_dict(), snapshots[2])


def test_reference_command_rebuilds_what_training_wrote(datasets, tmp_path: Path, capsys):
    out = tmp_path / "r.safetensors"
    card = train_from_folders([datasets[0]], out, val_data=datasets[1], settings=QUICK, config=SMALL)
    ref_file = tmp_path / "r.reference.safetensors"
    assert card.reference["file"] == ref_file.name and card.reference["sha256"] == sha256_file(ref_file)
    assert "without a bleed among the training series" in card.reference["data"]
    trained, _ = load_weights(out)
    assert trained.reference_features.shape == (REFERENCE_POSITIONS, SMALL.feature_size)
    ref_file.unlink()
    with pytest.raises(ViewerError, match="reference series"):
        load_weights(out)
    assert main(["reference", "--model", str(out), "--data", str(datasets[0]), "--device", "cpu", "-q"]) == 0
    assert "weights did not change" in capsys.readouterr().out
    rebuilt, again = load_weights(out)
    assert again.sha256 == card.sha256 == sha256_file(out)
    assert again.reference["sha256"] == sha256_file(ref_file)
    assert "seed 11" in again.reference["data"]
    torch.testing.assert_close(rebuilt.reference_features, trained.reference_features, atol=1e-4, rtol=1e-4)


def test_evaluation_card_counts_looks_and_keeps_no_machine_paths(datasets, tmp_path: Path):
    out = tmp_path / "looks.safetensors"
    train_from_folders([datasets[0]], out, val_data=datasets[1], settings=QUICK, config=SMALL)
    for look in (1, 2):
        command = ["gru-viewer", "evaluate", "--model", str(out), "--data", str(datasets[1]), "--update-card"]
        _, card, _ = evaluate_folder(
            out, datasets[1], update_card=True, command=[*command, f"--json={out}.json"]
        )
        assert card.evaluation["looks"] == {"model": look, "hidden_track_state_difference": look}
    assert (
        card.evaluation["command"] == "gru-viewer evaluate --model FILE --data DIR --update-card --json=FILE"
    )
    assert str(tmp_path) not in read_card(tmp_path / "looks.card.json").evaluation["command"]
    assert "looked at" in (tmp_path / "looks.card.md").read_text()


def test_further_evaluations_sit_beside_the_main_one(datasets, tmp_path: Path, capsys):
    out = tmp_path / "further.safetensors"
    train_from_folders([datasets[0]], out, val_data=datasets[1], settings=QUICK, config=SMALL)
    main(["evaluate", "--model", str(out), "--data", str(datasets[1]), "--update-card", "-q"])
    main_metrics = read_card(tmp_path / "further.card.json").metrics
    args = ["evaluate", "--model", str(out), "--data", str(datasets[0]), "--add-to-card", "Other set"]
    assert main([*args, "-q"]) == 0 and main([*args, "-q"]) == 0
    printed = capsys.readouterr().out
    assert "sensitivity" in printed and "specificity" in printed
    card = read_card(tmp_path / "further.card.json")
    assert card.metrics == main_metrics  # the main evaluation is untouched
    assert len(card.evaluations) == 1  # the same data again replaces its entry and counts the look
    entry = card.evaluations[0]
    assert entry["title"] == "Other set" and entry["looks"]["model"] == 2
    assert "seed 11" in entry["data"] and entry["metrics"]["studies"] == 6
    assert {r["what"] for r in entry["by_group"]} == {"sensitivity", "specificity"}
    md = (tmp_path / "further.card.md").read_text()
    assert "## Further evaluations" in md and "### Other set" in md and "What it misses" in md


def test_portable_command_keeps_project_paths_relative(tmp_path: Path):
    inside = tmp_path / "resources" / "m.safetensors"
    command = ["gru-viewer", "evaluate", "--model", str(inside), "--data", "/elsewhere/heldout", "-q"]
    assert portable_command(command, root=tmp_path) == (
        "gru-viewer evaluate --model resources/m.safetensors --data DIR -q"
    )


def test_recipe_states_the_augmentation_actually_used():
    from viewer.model.workflow import recipe

    text = recipe(TrainSettings(hu_jitter=12.0, noise_hu=9.5))
    assert "HU offsets up to 12 HU" in text and "added noise up to 9.5 HU" in text


def test_a_thick_slab_holds_its_slice_and_is_a_bleed_when_any_of_its_slices_is():
    from viewer.model.training import slab_around

    hu = np.arange(6, dtype=np.float16)[:, None, None] * np.ones((6, 4, 4), dtype=np.float16)
    labels = np.array([0, 0, 0, 1, 0, 0], dtype=np.float32)
    gen = torch.Generator().manual_seed(0)
    seen: set[float] = set()
    for _ in range(40):
        slab, label = slab_around(hu, labels, 2, 3, gen)
        mean = float(slab[0, 0])
        assert mean in (1.0, 2.0, 3.0)  # slices 0-2, 1-3 or 2-4: every slab holds slice 2
        assert label == (1.0 if mean >= 2.0 else 0.0)  # slice 3 is a bleed slice
        seen.add(mean)
    assert seen == {1.0, 2.0, 3.0}
    edge, _ = slab_around(hu, labels, 0, 2, gen)
    assert float(edge[0, 0]) == 0.5  # kept inside the series
    whole, label = slab_around(hu[:2], labels[:2], 1, 3, gen)
    assert float(whole[0, 0]) == 0.5 and label == 0.0  # a series shorter than the slab gives all its slices


def test_a_tilted_slice_moves_along_the_series_row_by_row_and_is_cut_only_through_normal_slices():
    from viewer.model.preprocess import AIR_HU
    from viewer.model.training import tilted_slice

    n, rows = 10, 20
    hu = np.broadcast_to(np.arange(n, dtype=np.float16)[:, None, None] * 10, (n, rows, 4)).copy()
    labels = np.zeros(n, dtype=np.float32)
    cut, label = tilted_slice(hu, labels, 5, 4.0)
    assert label == 0.0
    expected = 10 * (5 + 4.0 * ((np.arange(rows) + 0.5) / rows - 0.5))
    np.testing.assert_allclose(cut[:, 0], expected, atol=1e-3)  # top rows from slice 3, bottom ones from 7
    np.testing.assert_allclose(tilted_slice(hu, labels, 5, 0.0)[0], hu[5].astype(np.float32))
    edge, _ = tilted_slice(hu, labels, 0, 6.0)
    assert np.all(edge[:3] == AIR_HU) and np.all(edge[-3:] > 0)  # beyond half a slice outside: air
    labels[8] = 1.0
    assert tilted_slice(hu, labels, 5, 4.0) is not None  # passes through slices 3-7 only
    assert tilted_slice(hu, labels, 5, 6.0) is None  # reaches slice 8: where the bleed lies in it is unknown


def test_slab_augmentation_is_in_the_recipe_and_fingerprint_only_when_used(datasets, tmp_path: Path):
    from viewer.model.workflow import recipe

    assert "thick slab" not in recipe(TrainSettings()) and "tilted" not in recipe(TrainSettings())
    assert "For 25 % of the slice CNN's training slices" in recipe(TrainSettings(slab_fraction=0.25))
    assert "For 20 % of them, the slice re-cut on a plane tilted" in recipe(TrainSettings(tilt_fraction=0.2))
    with pytest.raises(ValueError, match="slab_fraction"):
        TrainSettings(slab_fraction=1.5)
    with pytest.raises(ValueError, match="together"):
        TrainSettings(slab_fraction=0.6, tilt_fraction=0.6)
    train_series = _prepared(datasets[0], tmp_path / "cache")[1]
    val_series = _prepared(datasets[1], tmp_path / "cache")[1]
    plain = Trainer(SMALL, QUICK, train_series, val_series, tmp_path / "a.safetensors")
    for name in ("slab_fraction", "tilt_fraction", "max_tilt_slices"):
        assert name not in plain._fingerprint()["settings"]  # checkpoints from before them still resume
    slabs = Trainer(
        SMALL, replace(QUICK, slab_fraction=1.0), train_series, val_series, tmp_path / "b.safetensors"
    )
    assert slabs._fingerprint()["settings"]["slab_fraction"] == 1.0
    gen = torch.Generator().manual_seed(1)
    s = next(k for k, series in enumerate(train_series) if series.label == 1)
    labels = slabs._train_labels[s]
    for j in range(train_series[s].n_slices):
        hu, label = slabs._encoder_item(s, j, gen)
        assert not np.array_equal(hu, train_series[s].hu[j].astype(np.float32))  # always a slab at 1.0
        assert label >= labels[j]
    result = slabs.run()
    assert np.isfinite(result.threshold)
    tilts = Trainer(
        SMALL, replace(QUICK, tilt_fraction=1.0), train_series, val_series, tmp_path / "c.safetensors"
    )
    normal = next(k for k, series in enumerate(train_series) if series.label == 0)
    changed = 0
    for j in range(train_series[normal].n_slices):
        hu, label = tilts._encoder_item(normal, j, gen)
        changed += not np.array_equal(hu, train_series[normal].hu[j].astype(np.float32))
        assert label == 0.0
    assert changed >= train_series[normal].n_slices - 1  # a slope drawn near 0 may leave one as it was
    for j in np.flatnonzero(
        labels > 0.5
    ):  # a bleed slice is never tilted: where the plane cuts it is unknown
        hu, label = tilts._encoder_item(s, int(j), gen)
        np.testing.assert_array_equal(hu, train_series[s].hu[j].astype(np.float32))
        assert label == 1.0
    assert np.isfinite(tilts.run().threshold)


def test_capped_positives_keep_at_most_that_many_per_series_drawn_afresh():
    from viewer.model.training import capped_per_series

    items = [(0, j) for j in range(10)] + [(1, 3)] + [(2, j) for j in range(4)]
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    assert capped_per_series(items, 0, gen) == items
    assert torch.equal(gen.get_state(), state)  # an uncapped epoch draws nothing: old runs stay the same
    first = capped_per_series(items, 2, gen)
    counts = {s: sum(1 for t, _ in first if t == s) for s in (0, 1, 2)}
    assert counts == {0: 2, 1: 1, 2: 2}
    assert set(first) <= set(items) and len(set(first)) == len(first)
    draws = {tuple(capped_per_series(items, 2, gen)) for _ in range(10)}
    assert len(draws) > 1  # another epoch, other slices of the large bleeds


def test_an_encoder_epoch_with_a_cap_reads_fewer_bleed_slices(datasets, tmp_path: Path, capsys):
    from viewer.model.workflow import recipe

    assert "bleed slices of a series" not in recipe(TrainSettings())
    assert "at most 1 bleed slices of a series" in recipe(TrainSettings(positives_per_series=1))
    with pytest.raises(ValueError, match="positives_per_series"):
        TrainSettings(positives_per_series=-1)
    train_series = _prepared(datasets[0], tmp_path / "cache")[1]
    val_series = _prepared(datasets[1], tmp_path / "cache")[1]
    read: dict[str, list[float]] = {}
    for name, cap in (("all", 0), ("capped", 1)):
        trainer = Trainer(
            SMALL, replace(QUICK, positives_per_series=cap), train_series, val_series, tmp_path / f"{name}.st"
        )
        item, seen = trainer._encoder_item, read.setdefault(name, [])

        def counted(s, j, gen, item=item, seen=seen):
            hu, label = item(s, j, gen)
            seen.append(label)
            return hu, label

        trainer._encoder_item = counted
        trainer._encoder_epoch(0, trainer._optimizer("encoder"))
        assert ("positives_per_series" in trainer._fingerprint()["settings"]) == (cap > 0)
    bleeds = sum(1 for s in train_series if s.label == 1)
    assert sum(read["capped"]) == bleeds < sum(read["all"])
    assert len(read["capped"]) == 3 * bleeds  # two normal slices per bleed slice, as uncapped
    args = ["train", "--data", str(datasets[0]), "--out", str(tmp_path / "x.safetensors"), "-q"]
    assert main([*args, "--positives-per-series", "-1"]) == 1
    assert "--positives-per-series must be 0 (all) or more" in capsys.readouterr().err


def test_a_card_update_keeps_what_another_command_wrote_meanwhile(datasets, tmp_path: Path, monkeypatch):
    out = tmp_path / "race.safetensors"
    train_from_folders([datasets[0]], out, val_data=datasets[1], settings=QUICK, config=SMALL)
    _, loaded = load_weights(out)
    evaluate = workflow.evaluate_series

    def evaluate_while_another_writes(*args, **kwargs):
        meanwhile = read_card(tmp_path / "race.card.json")  # e.g. an ablation finishing first
        meanwhile.ablation = {"description": "written meanwhile"}
        write_card(meanwhile, tmp_path / "race.card.json")
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(workflow, "evaluate_series", evaluate_while_another_writes)
    evaluate_folder(out, datasets[1], add_to_card="Later")
    card = read_card(tmp_path / "race.card.json")
    assert card.ablation["description"] == "written meanwhile" and card.evaluations[0]["title"] == "Later"
    write_card(dataclasses.replace(loaded, sha256="0" * 64), tmp_path / "race.card.json")
    with pytest.raises(ViewerError, match="other weights"):
        current_card(out, loaded)


def test_fine_tuning_that_never_beats_the_sequence_stage_keeps_its_weights(datasets, tmp_path: Path):
    """The sequence stage's kept weights are the bar fine-tuning must clear: fine-tuning epochs scoring below
    the sequence stage's best leave the sequence stage's weights in place; one above it is kept."""
    train_series = _prepared(datasets[0], tmp_path / "cache")[1]
    val_series = _prepared(datasets[1], tmp_path / "cache")[1]
    settings = TrainSettings(
        encoder_epochs=0, sequence_epochs=2, finetune_epochs=2, batch_slices=32, patience=2, lr_finetune=1e-2
    )
    messages: list[str] = []
    worse = Trainer(
        SMALL, settings, train_series, val_series, tmp_path / "a.safetensors", log=messages.append
    )
    snapshots: list[dict] = []
    _scripted_validation(worse, [0.80, 0.90, 0.85, 0.70, 0.5, 0.5], snapshots)
    result = worse.run()
    assert any("no epoch beat the previous stage's weights (validation 0.9000)" in m for m in messages)
    _assert_same_weights(result.model.state_dict(), snapshots[1])  # the sequence stage's epoch 2
    assert any(
        not torch.equal(snapshots[3][k], v) for k, v in snapshots[1].items()
    )  # fine-tuning did change them

    better = Trainer(SMALL, settings, train_series, val_series, tmp_path / "b.safetensors")
    snapshots = []
    _scripted_validation(better, [0.80, 0.90, 0.95, 0.70, 0.5, 0.5], snapshots)
    result = better.run()
    _assert_same_weights(result.model.state_dict(), snapshots[2])  # fine-tuning's epoch 1


def test_bf16_trains_the_encoder_in_bfloat16_and_keeps_float32_weights(datasets, tmp_path: Path):
    train_series = _prepared(datasets[0], tmp_path / "cache")[1]
    val_series = _prepared(datasets[1], tmp_path / "cache")[1]
    settings = replace(QUICK, precision="bf16")
    trainer = Trainer(SMALL, settings, train_series, val_series, tmp_path / "bf.safetensors")
    seen: list[tuple[bool, torch.dtype]] = []
    stem = trainer.model.encoder.stem[0]
    stem.register_forward_hook(lambda m, _i, out: seen.append((torch.is_grad_enabled(), out.dtype)))
    result = trainer.run()

    assert {dtype for grad, dtype in seen if grad} == {torch.bfloat16}  # every training pass of the CNN
    assert {dtype for grad, dtype in seen if not grad} == {torch.float32}  # features and validation
    assert all(v.dtype == torch.float32 for v in result.model.state_dict().values() if v.is_floating_point())
    out = tmp_path / "bf16" / "small.safetensors"
    card = train_from_folders(
        [datasets[0]], out, val_data=datasets[1], settings=settings, config=SMALL, cache=tmp_path / "cache"
    )
    assert card.training["settings"]["precision"] == "bf16"
    model, _ = load_weights(out)
    assert np.isfinite(model.config.operating_threshold)


def test_a_bf16_run_resumes_itself_but_not_a_float32_checkpoint(datasets, tmp_path: Path):
    train_series = _prepared(datasets[0], tmp_path / "cache")[1]
    val_series = _prepared(datasets[1], tmp_path / "cache")[1]
    settings = TrainSettings(encoder_epochs=2, sequence_epochs=1, finetune_epochs=0, batch_slices=32)
    bf16 = replace(settings, precision="bf16")
    whole = Trainer(SMALL, bf16, train_series, val_series, tmp_path / "a.safetensors").run()

    def cancel_after_first_epoch() -> bool:
        return len(interrupted.history) >= 1

    interrupted = Trainer(
        SMALL, bf16, train_series, val_series, tmp_path / "b.safetensors", cancel=cancel_after_first_epoch
    )
    with pytest.raises(CancelledError):
        interrupted.run()
    resumed = Trainer(SMALL, bf16, train_series, val_series, tmp_path / "b.safetensors").run()
    _assert_same_weights(resumed.model.state_dict(), whole.model.state_dict())

    messages: list[str] = []
    Trainer(SMALL, settings, train_series, val_series, tmp_path / "b.safetensors", log=messages.append).run()
    assert any("different run" in m for m in messages)
    with pytest.raises(ValueError, match="precision"):
        TrainSettings(precision="fp16")


def test_cross_generator_rows_go_on_the_named_card_only(datasets, tmp_path: Path, capsys):
    wide = tmp_path / "wide"
    write_phantom_dataset(wide, studies=2, seed=13, matrix=64, family="wide", slice_mm=5.0)
    shipped, other = tmp_path / "shipped.safetensors", tmp_path / "other.safetensors"
    quick = [
        "--encoder-epochs",
        "1",
        "--sequence-epochs",
        "1",
        "--finetune-epochs",
        "0",
        "--device",
        "cpu",
        "-q",
    ]
    for out in (shipped, other):
        assert (
            main(["train", "--data", str(datasets[0]), "--val", str(datasets[1]), "--out", str(out), *quick])
            == 0
        )
    other_card_before = (tmp_path / "other.card.json").read_text()
    assert read_card(tmp_path / "other.card.json").training["families"] == ["classic"]

    args = [
        "evaluate",
        "--model",
        str(other),
        "--data",
        str(wide),
        "--cross-generator-to",
        str(shipped),
        "-q",
    ]
    assert main(args) == 0
    assert main(args) == 0  # the same model on the same data: its row is replaced, not repeated
    assert "cross-generator row added" in capsys.readouterr().out

    card = read_card(tmp_path / "shipped.card.json")
    assert len(card.cross_generator) == 1
    row = card.cross_generator[0]
    assert (row["started_from"], row["trained_family"], row["scored_family"]) == (
        "scratch",
        "classic",
        "wide",
    )
    assert row["sha256"] == read_card(tmp_path / "other.card.json").sha256
    assert set(row["metrics"]) >= {"study_auroc", "slice_auroc", "sensitivity", "specificity"}
    assert row["command"].startswith("gru-viewer evaluate --model FILE --data DIR --cross-generator-to FILE")
    markdown = (tmp_path / "shipped.card.md").read_text()
    assert (
        "## Cross-generator validation" in markdown
        and "| slice_gru 0.1.0 | scratch | classic | classic | wide |" in markdown
    )
    trained_on = markdown.split("- slice_gru 0.1.0: trained on ")[1].split("; scored on ")[0]
    # Its data in words, each set once; its own card has the commands that rebuild them.
    assert "series" in trained_on and "demo-data" not in trained_on
    assert (tmp_path / "other.card.json").read_text() == other_card_before
    assert main([*args, "--robustness"]) == 1


def test_families_of_a_card_from_before_they_were_recorded(datasets):
    assert workflow._families_in(workflow.describe(Path("missing.json"), 3, 1)) == ["unstated"]
    assert workflow._families_in(workflow.describe(datasets[0] / "labels.json", 6, 3)) == ["classic"]
    text = (
        "950 series (475 with a bleed), synthetic head-CT phantoms, seed 101, 256×256 matrix, 5 mm slices; then "
        "further trained on 600 series (300 with a bleed), synthetic head-CT phantoms of the wide family, seed 601"
    )
    assert workflow._families_in(text) == ["classic", "wide"]
