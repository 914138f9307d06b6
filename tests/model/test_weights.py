"""Weights: safetensors only, checked against the model card."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from viewer.errors import ViewerError
from viewer.model import card as cards
from viewer.model import weights as w
from viewer.model.config import ModelConfig
from viewer.model.network import SliceGRUNet

CONFIG = ModelConfig(input_size=32, encoder_channels=(8, 16, 32), hidden_size=8)


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[SliceGRUNet, Path, cards.ModelCard]:
    torch.manual_seed(0)
    model = SliceGRUNet(CONFIG).eval()
    path = tmp_path / "test_model.safetensors"
    card = w.save_weights(
        model,
        path,
        name="test-model",
        version="0.0.1",
        training_data="Phantom studies from viewer.synth (seed 0).",
        metrics={"study_auroc": 0.91, "slice_auroc": 0.88},
    )
    return model, path, card


def test_round_trip(saved):
    model, path, card = saved
    assert cards.card_path_for(path).is_file()
    assert card.sha256 == cards.sha256_file(path)
    loaded, card2 = w.load_weights(path)
    assert not loaded.training
    assert card2.to_dict() == card.to_dict()
    assert card2.config == CONFIG
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).study_logit, model(x).study_logit)


def test_markdown_card(saved):
    _, _, card = saved
    text = cards.card_to_markdown(card)
    assert text.startswith("# Model card: test-model 0.0.1")
    for needle in (
        card.sha256,
        "| study AUROC |",
        "Not a medical device",
        "Phantom studies",
        "keeps the previous state",
    ):
        assert needle in text
    assert "0.5" in text


def test_tampered_byte_is_refused(saved):
    _, path, _ = saved
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ViewerError, match="SHA-256"):
        w.load_weights(path)


def _rewrite_card(path: Path, **changes) -> None:
    card_file = cards.card_path_for(path)
    data = json.loads(card_file.read_text())
    data.update(changes)
    card_file.write_text(json.dumps(data))


def test_torch_zip_checkpoint_is_refused(saved):
    model, path, _ = saved
    bad = path.with_name("ckpt.safetensors")
    torch.save(model.state_dict(), bad)
    cards.card_path_for(bad).write_text(cards.card_path_for(path).read_text())
    _rewrite_card(bad, sha256=cards.sha256_file(bad))
    with pytest.raises(ViewerError, match="pickle"):
        w.load_weights(bad)


def test_plain_pickle_is_refused(saved):
    _, path, _ = saved
    bad = path.with_name("plain.safetensors")
    bad.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}, protocol=4))
    cards.card_path_for(bad).write_text(cards.card_path_for(path).read_text())
    _rewrite_card(bad, sha256=cards.sha256_file(bad))
    with pytest.raises(ViewerError, match="pickle"):
        w.load_weights(bad)


def test_card_for_another_architecture_is_refused(saved):
    _, path, _ = saved
    _rewrite_card(path, config={**CONFIG.to_dict(), "hidden_size": 12})
    with pytest.raises(ViewerError, match="wrong shapes"):
        w.load_weights(path)


def test_missing_tensors_are_refused(saved):
    model, path, _ = saved
    tensors = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("slice_head")}
    save_file(tensors, str(path))
    _rewrite_card(path, sha256=cards.sha256_file(path))
    with pytest.raises(ViewerError, match="missing tensors"):
        w.load_weights(path)


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps(["a list"]),
        json.dumps({"name": "x"}),
        json.dumps({"name": "x", "version": "1", "sha256": "abc", "config": {}}),
    ],
)
def test_malformed_card_is_refused(saved, content):
    _, path, _ = saved
    cards.card_path_for(path).write_text(content)
    with pytest.raises(ViewerError, match="model card"):
        w.load_weights(path)


def test_missing_files_are_refused(saved):
    _, path, _ = saved
    cards.card_path_for(path).unlink()
    with pytest.raises(ViewerError, match="does not exist"):
        w.load_weights(path)
    with pytest.raises(ViewerError, match="does not exist"):
        w.load_weights(path.with_name("nothing.safetensors"))


def test_header_starting_like_a_pickle_is_still_safetensors(tmp_path):
    """A valid header length may begin with byte 0x80; only a bad header makes the file suspect."""
    header = b"{}".ljust(0x180, b" ")
    path = tmp_path / "empty.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    assert path.read_bytes()[0] == 0x80
    w._check_safetensors_format(path)


def test_default_paths(monkeypatch, tmp_path):
    paths = cards.default_model_paths()
    repo = Path(w.__file__).resolve().parents[2]
    assert paths.weights == repo / "resources" / "models" / "slice_gru_default.safetensors"
    assert paths.card == repo / "resources" / "models" / "slice_gru_default.card.json"
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert (
        cards.default_model_paths().weights
        == tmp_path / "resources" / "models" / "slice_gru_default.safetensors"
    )


@pytest.fixture()
def with_reference(saved) -> tuple[Path, torch.Tensor]:
    _, path, _ = saved
    features = torch.rand(5, CONFIG.feature_size)
    w.attach_reference(path, features, "five test positions")
    return path, features


def test_reference_series_is_named_and_hashed_on_the_card(with_reference):
    path, features = with_reference
    card = cards.read_card(cards.card_path_for(path))
    ref_file = path.with_name("test_model.reference.safetensors")
    assert card.reference["file"] == ref_file.name
    assert card.reference["sha256"] == cards.sha256_file(ref_file)
    assert card.reference["positions"] == 5 and card.reference["data"] == "five test positions"
    assert card.sha256 == cards.sha256_file(path)  # the weights did not change
    assert card.reference["sha256"] in cards.card_to_markdown(card)
    model, _ = w.load_weights(path)
    torch.testing.assert_close(model.reference_features, features)
    assert "reference_features" not in model.state_dict()


def test_changed_reference_series_is_refused(with_reference):
    path, features = with_reference
    ref_file = path.with_name("test_model.reference.safetensors")
    save_file({"features": features + 1e-3}, str(ref_file))
    with pytest.raises(ViewerError, match="SHA-256") as info:
        w.load_weights(path)
    assert info.value.path == str(ref_file)
    model, _ = w.load_weights(path, with_reference=False)
    assert model.reference_features.numel() == 0


def test_missing_reference_series_is_refused_by_name(with_reference):
    path, _ = with_reference
    ref_file = path.with_name("test_model.reference.safetensors")
    ref_file.unlink()
    with pytest.raises(ViewerError, match="reference series") as info:
        w.load_weights(path)
    assert info.value.path == str(ref_file)
    assert "does not exist" in str(info.value)


def test_pickled_reference_series_is_refused(with_reference):
    path, _ = with_reference
    ref_file = path.with_name("test_model.reference.safetensors")
    ref_file.write_bytes(pickle.dumps({"features": [1.0]}, protocol=4))
    _rewrite_card(
        path,
        reference={
            **cards.read_card(cards.card_path_for(path)).reference,
            "sha256": cards.sha256_file(ref_file),
        },
    )
    with pytest.raises(ViewerError, match="pickle"):
        w.load_weights(path)
