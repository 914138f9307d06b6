"""GatedGRU: same function as torch.nn.GRU, exact gates, gradients in eval mode."""

from __future__ import annotations

import pytest
import torch

from viewer.model.gated_gru import GatedGRU, GateStates

SHAPES = [(1, 1, 4, 3), (3, 7, 16, 8), (2, 20, 5, 12)]  # batch, seq, input, hidden


def _pair(input_size: int, hidden: int, layers: int, bidirectional: bool, batch_first: bool, seed: int = 0):
    torch.manual_seed(seed)
    ref = torch.nn.GRU(
        input_size, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first
    )
    ours = GatedGRU(
        input_size, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first
    )
    ours.load_state_dict(ref.state_dict())
    return ref.eval(), ours.eval()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
def test_equals_nn_gru(shape, layers, bidirectional, with_h0, batch_first):
    batch, seq, input_size, hidden = shape
    ref, ours = _pair(input_size, hidden, layers, bidirectional, batch_first)
    x = torch.randn(batch, seq, input_size) if batch_first else torch.randn(seq, batch, input_size)
    h0 = torch.randn(layers * (2 if bidirectional else 1), batch, hidden) if with_h0 else None
    with torch.no_grad():
        out_ref, hn_ref = ref(x, h0)
        out, hn, _ = ours(x, h0)
    assert out.shape == out_ref.shape and hn.shape == hn_ref.shape
    assert (out - out_ref).abs().max() <= 1e-5
    assert (hn - hn_ref).abs().max() <= 1e-5


def test_parameter_names_match_nn_gru():
    ref, ours = _pair(6, 4, 2, True, True)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for name, tensor in ref.state_dict().items():
        assert ours.state_dict()[name].shape == tensor.shape


def _recompute(
    states: GateStates, layer_input: torch.Tensor, gru: GatedGRU, layer: int
) -> dict[str, torch.Tensor]:
    suffix = "_reverse" if states.reverse else ""
    w_ih = getattr(gru, f"weight_ih_l{layer}{suffix}")
    w_hh = getattr(gru, f"weight_hh_l{layer}{suffix}")
    b_ih = getattr(gru, f"bias_ih_l{layer}{suffix}")
    b_hh = getattr(gru, f"bias_hh_l{layer}{suffix}")
    gi = layer_input @ w_ih.T + b_ih
    gh = states.h_prev @ w_hh.T + b_hh
    i_r, i_z, i_n = gi.chunk(3, -1)
    h_r, h_z, h_n = gh.chunk(3, -1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return {"r": r, "z": z, "n": n, "h": (1 - z) * n + z * states.h_prev}


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_gates_recomputed_from_previous_state_reproduce_h(layers, bidirectional):
    _, gru = _pair(5, 6, layers, bidirectional, True, seed=3)
    x = torch.randn(2, 9, 5)
    h0 = torch.randn(layers * (2 if bidirectional else 1), 2, 6)
    with torch.no_grad():
        out = gru(x, h0)
        layer_input = x
        for layer, per_dir in enumerate(out.trace.layers):
            assert len(per_dir) == (2 if bidirectional else 1)
            for states in per_dir:
                assert states.z.shape == (2, 9, 6)
                again = _recompute(states, layer_input, gru, layer)
                for key, value in again.items():
                    assert (value - getattr(states, key)).abs().max() <= 1e-5, key
            layer_input = torch.cat([s.h for s in per_dir], dim=-1)
        assert (layer_input - out.output).abs().max() == 0


def test_update_gate_one_keeps_previous_state():
    """PyTorch convention: z ≈ 1 keeps h_{t−1} (the seed articles' z is 1 − z)."""
    gru = GatedGRU(3, 4, bidirectional=False).eval()
    with torch.no_grad():
        gru.bias_ih_l0[4:8] = 40.0  # z part of the input bias
        h0 = torch.randn(1, 1, 4)
        out = gru(torch.randn(1, 6, 3), h0)
    assert torch.all(out.trace.layers[0][0].z > 0.999)
    assert torch.allclose(out.output[0], h0[0].expand(6, 4), atol=1e-5)


def test_gradients_flow_in_eval_mode():
    _, gru = _pair(4, 5, 2, True, True)
    gru.eval()
    x = torch.randn(2, 6, 4, requires_grad=True)
    out = gru(x)
    (out.output.square().sum() + out.h_n.sum()).backward()
    assert not gru.training
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in gru.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_state_gradient_is_the_total_derivative():
    """∂ h_T / ∂ h_t through the recurrence equals restarting the GRU from h_t as a leaf."""
    _, gru = _pair(3, 4, 1, False, True, seed=1)
    x = torch.randn(1, 8, 3)
    out = gru(x)
    target = out.h_n.sum()
    grads = out.trace.state_gradient(target)  # (D, B, T, H)
    assert grads.shape == (1, 1, 8, 4)
    for t in (0, 3, 6):
        leaf = out.trace.layers[0][0].h[:, t].detach().requires_grad_(True)
        gru(x[:, t + 1 :], leaf.unsqueeze(0)).h_n.sum().backward()
        assert torch.allclose(grads[0, :, t], leaf.grad, atol=1e-6)


def test_state_gradient_bidirectional_orders_by_position():
    _, gru = _pair(3, 4, 1, True, True, seed=2)
    out = gru(torch.randn(1, 5, 3))
    # A target reading only the reverse state at position 4 (its first step) depends on nothing later in that
    # direction's reading order except itself: its gradient is non-zero at 4 and zero at positions 0-3.
    target = out.trace.layers[0][1].h[:, 4].sum()
    grads = out.trace.state_gradient(target)
    assert grads[1, 0, 4].abs().sum() > 0
    assert grads[1, 0, :4].abs().sum() == 0
    assert grads[0].abs().sum() == 0


def test_rejects_bad_shapes():
    gru = GatedGRU(3, 4)
    with pytest.raises(ValueError):
        gru(torch.randn(5, 3))
    with pytest.raises(ValueError):
        gru(torch.randn(1, 5, 3), torch.zeros(1, 1, 4))
