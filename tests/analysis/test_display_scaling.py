"""Pixel saliency scaled to the series (the default) or per slice, the same on screen, in the report and the PNG;
and the report's signed hidden-state track."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from pypdf import PdfReader

from viewer.analysis.display import (
    HIDDEN_AXIS,
    format_contribution,
    hidden_axis,
    saliency_magnitude,
    slice_weight,
    to_display_map,
)
from viewer.analysis.model_cache import load_model
from viewer.analysis.result import HIDDEN_KEYS
from viewer.analysis.run import analyze_volume
from viewer.analysis.session import AnalysisSession
from viewer.dicom.index import scan
from viewer.dicom.readers import load_stack
from viewer.model.card import default_model_paths
from viewer.report import ReportOptions, build_report
from viewer.report.images import render_key_image
from viewer.synth.dataset import write_phantom_dataset
from viewer.synth.labels import load_labels

OVERLAY_THRESHOLD = 0.30  # the overlay's default: below it pixels stay transparent


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_series_scaling_weights_each_slice_by_its_probability() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(32, 32)).astype(np.float32)
    per_slice = saliency_magnitude(raw)
    assert per_slice.max() == pytest.approx(1.0)
    assert np.allclose(saliency_magnitude(raw, 0.25), per_slice * 0.25)
    assert to_display_map(raw, 0.001).max() == 0  # a normal slice: nothing reaches even the first level
    assert to_display_map(raw, 1.0).max() == 255
    probabilities = np.array([0.01, 0.9])
    assert slice_weight(probabilities, 1, "series") == pytest.approx(0.9)
    assert slice_weight(probabilities, 1, "slice") is None
    assert slice_weight(probabilities, 5, "series") is None  # no probability: scaled by itself


def test_hidden_axis_is_fixed_unless_a_value_lies_outside() -> None:
    assert hidden_axis(np.array([0.0, 0.4, -0.2])) == HIDDEN_AXIS
    assert hidden_axis(np.array([0.0, 3.2]), np.array([-1.5])) == (-2.0, 4.0)
    assert [format_contribution(v) for v in (0.62, -0.041, 0.001, float("nan"))] == [
        "+0.62",
        "−0.04",
        "0.00",
        "—",
    ]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory):
    """The demo phantom (128², bleed case) and its bleed mask, slices ascending like the loaded volume."""
    root = tmp_path_factory.mktemp("scaling") / "phantom"
    write_phantom_dataset(root, studies=1, seed=0, matrix=128)
    volume = load_stack(next(scan([str(root)]).stacks()))
    return volume, load_labels(root).studies[0].load_mask()


def test_series_scaling_keeps_a_normal_slice_quiet_on_the_demo(phantom) -> None:
    """With the shipped weights: far from the bleed nearly nothing passes the overlay threshold when scaled to the
    series, while the first key slice shows a clear hot region; scaled per slice, the normal slice lights up."""
    if not default_model_paths().weights.is_file():
        pytest.skip("the shipped weights resources/models/slice_gru_default.safetensors are not installed")
    volume, mask = phantom
    model, card = load_model(None)
    session = AnalysisSession(volume, model, card)
    result = session.result
    bleed = [k for k in range(mask.shape[0]) if mask[k].any()]
    normal = 2  # head end of the series, far from the bleed
    assert min(abs(normal - k) for k in bleed) > 10
    key = result.key_slices[0]

    def above(k: int, scaling: str) -> float:
        shown = session.display_map(k, scaling)
        assert shown is not None
        return float((shown >= round(OVERLAY_THRESHOLD * 255)).mean())

    assert above(normal, "series") < 0.005
    assert above(key, "series") > 0.01
    assert session.display_map(key, "series").max() >= 250
    assert above(normal, "slice") > 0.005  # the noise of a normal slice, at full strength


def test_report_and_png_use_the_screen_scaling(phantom, model_file: Path) -> None:
    volume, _mask = phantom
    model, card = load_model(model_file)
    result = analyze_volume(volume, model, card)
    k = result.key_slices[0]
    series = render_key_image(volume, result, k, opacity=1.0, threshold=0.0)
    per_slice = render_key_image(volume, result, k, opacity=1.0, threshold=0.0, scaling="slice")
    assert series.overlay is not None and per_slice.overlay is not None
    if (
        float(result.slice_probabilities[k]) < 0.9
    ):  # the small random model is unsure: series scaling is dimmer
        assert not np.array_equal(series.overlay, per_slice.overlay)

    text = _text(build_report(volume, result, card).pdf)
    flat = " ".join(text.split())
    assert "Hidden-state evidence" in flat and "logit" in flat
    assert "towards a bleed" in flat and "overshoot" in flat and "carried" in flat
    assert "activations, not attribution" in flat
    assert "scaled to the series" in flat
    assert "hidden-state saliency" not in flat.lower()
    assert "scaled per slice" in " ".join(
        _text(build_report(volume, result, card, ReportOptions(scaling="slice")).pdf).split()
    )


def test_the_result_carries_direct_and_carried_parts(phantom, model_file: Path) -> None:
    volume, _mask = phantom
    model, card = load_model(model_file)
    result = analyze_volume(volume, model, card)
    assert set(result.hidden_saliency) == set(HIDDEN_KEYS)
    h = result.hidden_saliency
    assert np.allclose(h["combined"], h["forward"] + h["reverse"], atol=1e-5)
    assert np.allclose(h["combined"], h["combined_direct"] + h["combined_carried"], atol=1e-5)
    assert set(result.to_dict()["hidden_saliency"]) == set(HIDDEN_KEYS)
