"""Smoke test on a phantom study: preprocessing, forward, sequence and pixel explanations fit together."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from viewer.model import explanations as ex
from viewer.model.config import ModelConfig
from viewer.model.network import SliceGRUNet
from viewer.model.preprocess import Preprocessor

phantom = pytest.importorskip("viewer.synth.study")


def test_phantom_study_through_the_model():
    study = phantom.generate_study(np.random.default_rng(7), matrix=64, n_slices=8, bleed=True)
    config = ModelConfig(input_size=32, encoder_channels=(8, 16, 32), hidden_size=8)
    torch.manual_seed(0)
    model = SliceGRUNet(config).eval()
    inputs = Preprocessor.from_config(config)(study.hu, study.spacing)
    assert inputs.tensor.shape[1:] == (3, 32, 32)
    result = ex.analyse_sequence(model, inputs)
    assert result.output.slice_logits.shape == (1, inputs.mapping.n_model)
    per_original = inputs.mapping.to_original(result.output.slice_probabilities[0])
    assert per_original.shape == (study.hu.shape[0],)
    positive = [int(i) for i in np.flatnonzero(study.slice_labels)][:1]
    expl = ex.gradient_x_input(model, inputs, slices=positive)
    assert expl.pixel_maps[positive[0]].shape == study.hu.shape[1:]
    assert 0.0 <= ex.pointing_game(expl, {i: study.mask[i] for i in positive}) <= 1.0
