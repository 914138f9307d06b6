"""Per-series HU re-centring: the median it reads, the shift it gives, and the preprocessing that applies it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from viewer.model.config import ModelConfig
from viewer.model.explanations import baseline_slice
from viewer.model.hu_centring import HuCentring, reference_from, soft_tissue_median
from viewer.model.preprocess import Preprocessor


def _head(brain_hu: float, n: int = 8, size: int = 64, bleed: bool = False) -> np.ndarray:
    """Air around a bone ring around brain at ``brain_hu``, with a small +40 HU bleed when asked."""
    yy, xx = np.mgrid[:size, :size] - size / 2
    r = np.hypot(yy, xx)
    image = np.full((size, size), -1000.0, np.float32)
    image[r < 28] = 1000.0
    image[r < 24] = brain_hu
    if bleed:
        image[(np.abs(yy - 5) < 3) & (np.abs(xx) < 3)] = brain_hu + 40
    return np.repeat(image[None], n, axis=0)


def test_median_reads_the_brain_not_air_or_bone() -> None:
    assert soft_tissue_median(_head(31.0)) == pytest.approx(31.0)
    assert soft_tissue_median(_head(31.0, bleed=True)) == pytest.approx(31.0)
    assert soft_tissue_median(np.full((4, 16, 16), -1000.0, np.float32)) is None


def test_shift_moves_only_beyond_the_tolerance() -> None:
    centring = HuCentring(reference=32.0, tolerance=4.0)
    assert centring.shift(_head(30.0)) == 0.0
    assert centring.shift(_head(22.0)) == pytest.approx(6.0)
    assert centring.shift(_head(42.0)) == pytest.approx(-6.0)
    assert centring.shift(np.full((2, 8, 8), -1000.0, np.float32)) == 0.0
    assert HuCentring(32.0).shift(_head(22.0)) == pytest.approx(10.0)
    with pytest.raises(ValueError):
        HuCentring(32.0, tolerance=-1.0)
    with pytest.raises(ValueError):
        HuCentring(float("nan"))


def test_the_reader_is_told_only_of_shifts_worth_telling() -> None:
    centring = HuCentring(reference=32.0)
    assert centring.note(_head(31.0)) == ""  # moved by 1 HU, as most series are: no note
    assert centring.note(_head(37.0)) == ""  # the demo study: within the phantoms' own spread
    note = centring.note(_head(22.0))
    assert "22 HU, 10 HU below" in note and "shifted by +10 HU" in note
    assert "above" in centring.note(_head(40.0))


def test_reference_is_the_mean_median() -> None:
    assert reference_from([_head(30.0), _head(34.0), np.full((2, 8, 8), -1000.0)]) == pytest.approx(32.0)
    with pytest.raises(ValueError):
        reference_from([])


def test_config_round_trip_leaves_older_cards_unchanged() -> None:
    plain = ModelConfig(input_size=64)
    assert "hu_reference" not in plain.to_dict() and plain.centring is None
    centred = ModelConfig(input_size=64, hu_reference=31.8, hu_tolerance=4.0)
    assert ModelConfig.from_dict(centred.to_dict()) == centred
    assert centred.centring == HuCentring(31.8, 4.0)
    with pytest.raises(ValueError):
        ModelConfig(input_size=64, hu_reference=31.8, hu_tolerance=-2.0)


def test_an_offset_series_reaches_the_model_as_the_calibrated_one() -> None:
    prep = Preprocessor(32, centring=HuCentring(reference=31.0, tolerance=2.0))
    calibrated = prep(_head(31.0, bleed=True), (5.0, 1.0, 1.0))
    for offset in (-10.0, 10.0):
        drifted = _head(31.0 + offset, bleed=True)
        drifted[drifted > 500] = 1000.0  # the skull stays where it was: only soft tissue moved
        drifted[drifted < -500] = -1000.0
        inputs = prep(drifted, (5.0, 1.0, 1.0))
        assert inputs.hu_shift == pytest.approx(-offset + np.sign(offset) * 2.0)
        # inside the head (the rim mixes air and bone, which did not drift), to within the tolerance: 2 HU of the
        # 80 HU brain window
        inside = (slice(None), 0, slice(8, 24), slice(8, 24))
        assert torch.allclose(inputs.tensor[inside], calibrated.tensor[inside], atol=2.0 / 80 + 1e-5)
        assert not torch.allclose(prep_plain(drifted)[inside], calibrated.tensor[inside], atol=0.1)
    assert Preprocessor(32)(_head(21.0), (5.0, 1.0, 1.0)).hu_shift == 0.0


def prep_plain(hu: np.ndarray) -> torch.Tensor:
    return Preprocessor(32)(hu, (5.0, 1.0, 1.0)).tensor


def test_every_path_applies_the_same_shift() -> None:
    prep = Preprocessor(32, centring=HuCentring(reference=31.0))
    hu = _head(21.0, n=4, bleed=True)
    inputs = prep(hu, (5.0, 1.0, 1.0))
    assert inputs.hu_shift == pytest.approx(10.0)
    whole, _ = prep.differentiable(torch.from_numpy(hu), (5.0, 1.0, 1.0))
    torch.testing.assert_close(whole, inputs.tensor, atol=1e-5, rtol=0)
    leaf = torch.from_numpy(hu[2].copy()).requires_grad_(True)
    indices, rebuilt = prep.rebuild_model_slices(inputs, {2: leaf})
    assert list(indices) == [2]
    torch.testing.assert_close(rebuilt[0], inputs.tensor[2], atol=1e-5, rtol=0)
    # the air baseline is air as the model reads it: −1024 HU after the shift
    assert float(baseline_slice(inputs, 2, -1024.0)[0, 0]) == pytest.approx(-1034.0)
