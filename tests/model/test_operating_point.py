"""Choosing a trained model's operating threshold on validation folders of several families (`gru-viewer threshold`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from viewer.cli import main
from viewer.errors import ViewerError
from viewer.model import metrics
from viewer.model.card import read_card, sha256_file
from viewer.model.config import ModelConfig
from viewer.model.operating_point import ScoredSet, choose_threshold, format_choice
from viewer.model.training import TrainSettings
from viewer.model.weights import load_weights
from viewer.model.workflow import evaluate_folder, threshold_from_folders, train_from_folders
from viewer.synth.dataset import write_phantom_dataset

SMALL = ModelConfig(input_size=32, encoder_channels=(8, 16), hidden_size=8)
QUICK = TrainSettings(encoder_epochs=1, sequence_epochs=1, finetune_epochs=0, batch_slices=32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A small model trained on one phantom folder, and two validation folders (classic and wide family)."""
    root = tmp_path_factory.mktemp("operating_point")
    write_phantom_dataset(root / "train", studies=4, seed=21, matrix=64)
    write_phantom_dataset(root / "val_a", studies=4, seed=22, matrix=64)
    write_phantom_dataset(root / "val_b", studies=4, seed=23, matrix=64, family="wide")
    model = root / "model" / "m.safetensors"
    train_from_folders([root / "train"], model, val_data=root / "val_a", settings=QUICK, config=SMALL)
    return model, root / "val_a", root / "val_b"


def _set(name: str, labels: list[int], probs: list[float]) -> ScoredSet:
    return ScoredSet(name, np.asarray(labels), np.asarray(probs, dtype=float))


def test_the_threshold_maximises_youdens_j_on_the_pooled_sets_and_each_set_is_reported_at_both():
    a = _set("a", [0, 0, 1, 1], [0.10, 0.20, 0.60, 0.70])
    b = _set("b", [0, 0, 1, 1], [0.30, 0.55, 0.40, 0.90])
    choice = choose_threshold([a, b], previous=0.65)
    pooled_y = np.concatenate([a.labels, b.labels])
    pooled_p = np.concatenate([a.probabilities, b.probabilities])
    assert choice.threshold == pytest.approx(metrics.youden_threshold(pooled_y, pooled_p))
    sens, spec = metrics.sensitivity_specificity(pooled_y, pooled_p, choice.threshold)
    best = max(sum(metrics.sensitivity_specificity(pooled_y, pooled_p, t)) for t in np.linspace(0, 1, 101))
    assert sens + spec == pytest.approx(best)
    assert [s.description for s in choice.at_new] == ["a", "b"]
    for scored, new, old in zip([a, b], choice.at_new, choice.at_previous, strict=True):
        assert (new.sensitivity, new.specificity) == metrics.sensitivity_specificity(
            scored.labels, scored.probabilities, choice.threshold
        )
        assert (old.sensitivity, old.specificity) == metrics.sensitivity_specificity(
            scored.labels, scored.probabilities, 0.65
        )
        assert new.study_auroc == metrics.auroc(scored.labels, scored.probabilities)
    # 0.60 < 0.65: the old cut-off missed one of set a's bleeds.
    assert choice.at_previous[0].sensitivity == 0.5
    assert choice.pooled_at_new.study_auroc == metrics.auroc(pooled_y, pooled_p)
    assert (choice.pooled_at_new.sensitivity, choice.pooled_at_new.specificity) == (sens, spec)
    assert choice.pooled_at_previous.studies == 8 and choice.pooled_at_previous.with_bleed == 4
    table = format_choice(choice)
    assert "0.650" in table and f"{choice.threshold:.3f}" in table
    assert table.splitlines()[3].startswith("all ") and f"{metrics.auroc(pooled_y, pooled_p):.3f}" in table


def test_no_threshold_is_chosen_from_series_of_one_label():
    with pytest.raises(ViewerError, match="both with and without a bleed"):
        choose_threshold([_set("a", [1, 1], [0.2, 0.9]), _set("b", [1], [0.5])], previous=0.5)


def test_the_scores_are_the_viewers_and_only_the_card_changes(trained, tmp_path: Path):
    model, val_a, val_b = trained
    weights = tmp_path / "m.safetensors"
    weights.write_bytes(model.read_bytes())
    for suffix in (".card.json", ".card.md", ".reference.safetensors"):
        (tmp_path / f"m{suffix}").write_bytes((model.parent / f"m{suffix}").read_bytes())
    before = read_card(tmp_path / "m.card.json")
    choice, card, failed = threshold_from_folders(weights, [val_a, val_b])
    assert (
        not failed and card.operating_threshold == before.operating_threshold
    )  # nothing written without asking
    assert choice.previous == before.operating_threshold
    report, _, _ = evaluate_folder(weights, val_b)
    viewer_probs = [o.probability for o in report.outcomes]
    with pytest.raises(ViewerError, match="only with --update-card"):
        threshold_from_folders(weights, [val_a], version="2.0")
    sha = sha256_file(weights)
    choice, card, _ = threshold_from_folders(weights, [val_a, val_b], update_card=True, version="0.1.1")
    assert sha256_file(weights) == sha == card.sha256
    first = evaluate_folder(weights, val_a)[0].outcomes
    labels = np.asarray([o.label for o in [*first, *report.outcomes]])
    probs = np.asarray([o.probability for o in first] + viewer_probs)
    assert choice.threshold == pytest.approx(metrics.youden_threshold(labels, probs))
    model_loaded, loaded = load_weights(weights)
    assert loaded.version == "0.1.1" and loaded.operating_threshold == pytest.approx(choice.threshold)
    assert model_loaded.config.operating_threshold == pytest.approx(choice.threshold)
    point = loaded.training["operating_point"]
    assert point["previous"] == before.operating_threshold and point["previous_version"] == before.version
    assert ["seed 22" in point["sets"][0]["data"], "wide family" in point["sets"][1]["data"]] == [True, True]
    assert evaluate_folder(weights, val_b)[0].metrics["threshold"] == pytest.approx(choice.threshold)


def test_threshold_command_prints_the_sets_and_records_the_choice_on_the_card(
    trained, tmp_path: Path, capsys
):
    model, val_a, val_b = trained
    weights = tmp_path / "m.safetensors"
    for suffix in (".safetensors", ".card.json", ".card.md", ".reference.safetensors"):
        (tmp_path / f"m{suffix}").write_bytes((model.parent / f"m{suffix}").read_bytes())
    previous = read_card(tmp_path / "m.card.json").operating_threshold
    args = ["threshold", "--model", str(weights), "--val", str(val_a), "--val", str(val_b), "-q"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "seed 22" in printed and "wide family" in printed and f"(was {previous:.4f})" in printed
    assert read_card(tmp_path / "m.card.json").operating_threshold == previous
    assert main([*args, "--update-card", "--model-version", "0.2.0"]) == 0
    chosen = float(capsys.readouterr().out.split("operating threshold ")[1].split()[0])
    card = read_card(tmp_path / "m.card.json")
    assert card.version == "0.2.0" and card.operating_threshold == pytest.approx(chosen, abs=1e-4)
    assert card.training["operating_point"]["command"].startswith(
        "gru-viewer threshold --model FILE --val DIR"
    )
    md = (tmp_path / "m.card.md").read_text()
    assert (
        "Chosen by `gru-viewer threshold` on validation series only" in md
        and f"replaced {previous:.3f}" in md
    )
    mismatched = ["threshold", "--model", str(weights), "--val", str(val_a), "--val", str(val_b)]
    assert main([*mismatched, "--val-labels", "x.json", "-q"]) != 0
    assert "one labels file per validation folder" in capsys.readouterr().err
