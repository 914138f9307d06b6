"""SliceGRUNet shapes, pooling, config round-trip, and device choice."""

from __future__ import annotations

import json

import pytest
import torch

from viewer.errors import ViewerError
from viewer.model.config import ModelConfig
from viewer.model.device import available_devices, describe_device, pick_device
from viewer.model.gated_gru import GatedGRU
from viewer.model.network import SliceGRUNet, lse_pool

SMALL = ModelConfig(input_size=32, encoder_channels=(8, 16, 32), hidden_size=12)


@pytest.fixture(scope="module")
def model() -> SliceGRUNet:
    torch.manual_seed(0)
    return SliceGRUNet(SMALL).eval()


def test_forward_shapes_single_series(model):
    out = model(torch.rand(7, 3, 32, 32))
    assert out.slice_logits.shape == (1, 7)
    assert out.study_logit.shape == (1,)
    assert out.hidden.shape == (1, 7, 24)
    assert out.features.shape == (1, 7, 2 * 32)  # mean- and max-pooled
    assert len(out.trace.layers) == 1 and len(out.trace.layers[0]) == 2
    for states in out.trace.layers[0]:
        for gate in ("z", "r", "n", "h"):
            assert getattr(states, gate).shape == (1, 7, 12)
    assert torch.all((out.study_probability > 0) & (out.study_probability < 1))


def test_forward_shapes_batch_and_single_slice(model):
    out = model(torch.rand(2, 5, 3, 32, 32))
    assert out.slice_logits.shape == (2, 5) and out.study_logit.shape == (2,)
    one = model(torch.rand(1, 3, 32, 32))
    assert one.slice_logits.shape == (1, 1)
    torch.testing.assert_close(one.study_logit, one.slice_logits[:, 0])


def test_hidden_is_the_gru_output_and_in_the_graph(model):
    out = model(torch.rand(4, 3, 32, 32))
    fwd, rev = out.trace.layers[0]
    torch.testing.assert_close(out.hidden, torch.cat([fwd.h, rev.h], dim=-1))
    (grad,) = torch.autograd.grad(out.study_logit.sum(), out.hidden)
    assert grad.abs().sum() > 0


def test_encode_chunking_is_exact(model):
    x = torch.rand(10, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x, chunk=3), model.encode(x, chunk=64), atol=1e-6, rtol=1e-5)


def test_channels_last_changes_neither_features_nor_input_gradients(model):
    import copy

    plain = copy.deepcopy(model)
    plain.encoder.memory_format = torch.contiguous_format
    assert model.encoder.memory_format == torch.channels_last  # the layout every forward pass uses
    grads = []
    for net in (model, plain):
        x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
        out = net(x)
        out.study_logit.sum().backward()
        grads.append((out.features.detach(), x.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-6, rtol=1e-4)
    assert grads[0][1].is_contiguous()  # saliency maps come back in the input's own layout


def test_gradient_to_input_in_eval_mode(model):
    x = torch.rand(5, 3, 32, 32, requires_grad=True)
    model(x).study_logit.sum().backward()
    assert not model.training
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_uses_gated_gru_not_nn_gru(model):
    assert isinstance(model.gru, GatedGRU)
    assert not any(isinstance(m, torch.nn.GRU) for m in model.modules())


def test_lse_pool_is_a_smooth_max():
    logits = torch.tensor([[-3.0, -2.0, 4.0, -5.0]])
    pooled = lse_pool(logits, 5.0)
    assert logits.mean() < pooled < logits.max()
    torch.testing.assert_close(lse_pool(torch.full((1, 9), 1.5), 5.0), torch.tensor([1.5]))
    assert abs(lse_pool(logits, 500.0) - 4.0) < 0.01


def test_lse_pool_does_not_grow_with_slice_count():
    negative = torch.full((1, 300), -5.0)
    assert lse_pool(negative, 5.0).item() == pytest.approx(-5.0)
    one_positive = negative.clone()
    one_positive[0, 150] = 5.0
    assert lse_pool(one_positive, 5.0).item() > 3.0


def test_default_model_is_small():
    model = SliceGRUNet()
    size_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6
    assert size_mb < 5.0


def test_config_round_trip_through_json():
    cfg = ModelConfig(hidden_size=64, windows=((40, 80), (80, 200)), operating_threshold=0.3)
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert again.in_channels == 2


@pytest.mark.parametrize(
    "bad",
    [{"input_size": 100}, {"encoder_channels": (8,)}, {"operating_threshold": 1.0}, {"lse_sharpness": 0.0}],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        ModelConfig(**bad)


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError):
        ModelConfig.from_dict({"hidden": 3})


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == available_devices()[0]
    assert "CPU" in describe_device(torch.device("cpu"))
    with pytest.raises(ViewerError):
        pick_device("tpu-of-dreams")
    if not torch.cuda.is_available():
        with pytest.raises(ViewerError):
            pick_device("cuda")
