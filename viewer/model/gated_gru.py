"""A GRU built from plain tensor ops that hands back its gates.

Why not ``torch.nn.GRU``: cuDNN's fused GRU has no backward pass in ``eval()`` mode, so gradient saliency through it
fails on a GPU, and switching to ``train()`` to get gradients changes BatchNorm and dropout. The fused kernels also
keep their gates to themselves. :class:`GatedGRU` is the same function written with ordinary ops: autograd works in
any mode, on any device, and every step's gates are recorded as they are computed (exact, at no extra cost).

Gate convention (PyTorch's, used everywhere in GRU Viewer)::

    r_t = σ(W_ir x_t + b_ir + W_hr h_{t−1} + b_hr)                 reset gate
    z_t = σ(W_iz x_t + b_iz + W_hz h_{t−1} + b_hz)                 update gate
    n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t−1} + b_hn))      candidate
    h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}

so **z ≈ 1 keeps the previous state** and z ≈ 0 overwrites it with the candidate. The articles the project started
from write ``h_t = (1 − z) ⊙ h_{t−1} + z ⊙ h̃_t``; their z is ``1 − z`` here. For the reverse direction "previous"
means the state of slice t + 1 (the direction reads the sequence from its end).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

GATE_LABELS: dict[str, str] = {
    "z": "update gate z (1 = keep previous state)",
    "r": "reset gate r (1 = previous state enters the candidate)",
    "n": "candidate state n",
    "h": "hidden state h",
}


@dataclass
class GateStates:
    """Gates and states of one layer in one direction, indexed by sequence position (not by reading order).

    Attributes
    ----------
    z, r, n, h:
        ``(batch, seq, hidden)``: update gate, reset gate, candidate and hidden state at each position.
    h0:
        ``(batch, hidden)``: the state the direction started from.
    reverse:
        True for the direction that reads from the end of the sequence.
    """

    z: Tensor
    r: Tensor
    n: Tensor
    h: Tensor
    h0: Tensor
    reverse: bool

    @property
    def h_prev(self) -> Tensor:
        """``(batch, seq, hidden)``: the state each step started from (h_{t−1}; h_{t+1} for the reverse direction)."""
        first = self.h0.unsqueeze(1)
        if self.reverse:
            return torch.cat([self.h[:, 1:], first], dim=1)
        return torch.cat([first, self.h[:, :-1]], dim=1)

    def detach(self) -> GateStates:
        return GateStates(
            self.z.detach(), self.r.detach(), self.n.detach(), self.h.detach(), self.h0.detach(), self.reverse
        )


@dataclass
class GateTrace:
    """Everything the recurrence computed, per layer and direction.

    Attributes
    ----------
    layers:
        ``layers[l][d]`` is the :class:`GateStates` of layer ``l``, direction ``d`` (0 forward, 1 reverse).
    steps:
        ``steps[l][s]`` is the ``(directions, batch, hidden)`` state tensor produced at loop step ``s`` of layer
        ``l``, the very node the next step reads. Gradients taken with respect to these include every path through
        the recurrence (see :meth:`state_gradient`). Direction 1 at step ``s`` is sequence position ``seq − 1 − s``.
    """

    layers: list[tuple[GateStates, ...]]
    steps: list[list[Tensor]]

    def state_gradient(self, target: Tensor, layer: int = -1, retain_graph: bool = True) -> Tensor:
        """Total derivative of a scalar with respect to each hidden state of one layer.

        ``∂ target / ∂ h_t`` counts every path from ``h_t`` to the target: through the head reading ``h_t`` and
        through all later states of the recurrence that ``h_t`` feeds.

        Returns
        -------
        Tensor
            ``(directions, batch, seq, hidden)`` in sequence order, detached.
        """
        steps = self.steps[layer]
        grads = torch.autograd.grad(target, steps, retain_graph=retain_graph, allow_unused=True)
        stacked = torch.stack(
            [torch.zeros_like(s) if g is None else g for g, s in zip(grads, steps, strict=True)]
        )
        out = stacked.permute(1, 2, 0, 3)  # (D, B, T, H)
        if out.shape[0] == 2:
            out = torch.stack([out[0], out[1].flip(1)])
        return out.detach()

    def detach(self) -> GateTrace:
        """A copy without the autograd graph (and without the per-step nodes)."""
        return GateTrace([tuple(g.detach() for g in layer) for layer in self.layers], [])


class GRUOutput(NamedTuple):
    """What :meth:`GatedGRU.forward` returns: ``nn.GRU``'s ``(output, h_n)`` plus the trace."""

    output: Tensor
    h_n: Tensor
    trace: GateTrace


class GatedGRU(nn.Module):
    """Multi-layer (bi)directional GRU in plain tensor ops, returning its gates.

    Computes exactly what ``torch.nn.GRU`` computes (same equations, same parameter names and shapes:
    ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ``..._reverse``), so ``load_state_dict``
    accepts an ``nn.GRU`` state dict as is. The convention is PyTorch's::

        h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}
        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t−1} + b_hn))

    z ≈ 1 KEEPS the previous state. (The seed articles write the interpolation the other way round: their z is
    ``1 − z`` here.)

    The input projections of all steps are one matrix product before the loop; the loop does only the recurrent
    part, both directions at once as a batched product.

    Parameters
    ----------
    input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional:
        As for ``torch.nn.GRU``. ``batch_first`` defaults to True here.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = True,
        batch_first: bool = True,
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_layers < 1 or hidden_size < 1 or input_size < 1:
            raise ValueError("input_size, hidden_size and num_layers must be positive")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.batch_first = batch_first
        self.bias = bias
        self.dropout = float(dropout)
        self.num_directions = 2 if bidirectional else 1
        gates = 3 * hidden_size
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.num_directions
            for suffix in self._suffixes():
                name = f"l{layer}{suffix}"
                self.register_parameter(f"weight_ih_{name}", nn.Parameter(torch.empty(gates, layer_in)))
                self.register_parameter(f"weight_hh_{name}", nn.Parameter(torch.empty(gates, hidden_size)))
                if bias:
                    self.register_parameter(f"bias_ih_{name}", nn.Parameter(torch.empty(gates)))
                    self.register_parameter(f"bias_hh_{name}", nn.Parameter(torch.empty(gates)))
        self.reset_parameters()

    def _suffixes(self) -> Sequence[str]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def reset_parameters(self) -> None:
        """Uniform(−1/√hidden, 1/√hidden), as ``nn.GRU`` initialises."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"bidirectional={self.bidirectional}, batch_first={self.batch_first}, bias={self.bias}, "
            f"dropout={self.dropout}"
        )

    def _layer_params(self, layer: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        names = [f"l{layer}{s}" for s in self._suffixes()]
        w_ih = torch.cat([getattr(self, f"weight_ih_{n}") for n in names])  # (D·3H, I)
        w_hh = torch.stack([getattr(self, f"weight_hh_{n}") for n in names])  # (D, 3H, H)
        if not self.bias:
            return w_ih, w_hh, None, None
        b_ih = torch.cat([getattr(self, f"bias_ih_{n}") for n in names])  # (D·3H,)
        b_hh = torch.stack([getattr(self, f"bias_hh_{n}") for n in names])  # (D, 3H)
        return w_ih, w_hh, b_ih, b_hh

    def forward(self, input: Tensor, h0: Tensor | None = None) -> GRUOutput:
        """Run the GRU.

        Parameters
        ----------
        input:
            ``(batch, seq, input_size)`` if ``batch_first`` else ``(seq, batch, input_size)``.
        h0:
            ``(num_layers · directions, batch, hidden_size)``, zeros if omitted.

        Returns
        -------
        GRUOutput
            ``output`` shaped like ``nn.GRU``'s (last layer, directions concatenated on the feature axis), ``h_n``
            ``(num_layers · directions, batch, hidden)``, and the :class:`GateTrace`.
        """
        if input.dim() != 3:
            raise ValueError(f"GatedGRU expects a 3-D input, got shape {tuple(input.shape)}")
        x = input.transpose(0, 1) if self.batch_first else input  # (T, B, I)
        seq_len, batch, _ = x.shape
        if seq_len == 0:
            raise ValueError("GatedGRU needs at least one step")
        d_count, hidden = self.num_directions, self.hidden_size
        if h0 is None:
            h0 = x.new_zeros(self.num_layers * d_count, batch, hidden)
        elif h0.shape != (self.num_layers * d_count, batch, hidden):
            raise ValueError(
                f"h0 must have shape {(self.num_layers * d_count, batch, hidden)}, got {tuple(h0.shape)}"
            )

        layers: list[tuple[GateStates, ...]] = []
        steps_per_layer: list[list[Tensor]] = []
        h_n: list[Tensor] = []
        layer_in = x
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0.0 and self.training:
                layer_in = F.dropout(layer_in, self.dropout, training=True)
            start = h0[layer * d_count : (layer + 1) * d_count]  # (D, B, H)
            out, states, steps = self._run_layer(layer, layer_in, start)
            layers.append(states)
            steps_per_layer.append(steps)
            h_n.append(steps[-1])
            layer_in = out
        output = layer_in.transpose(0, 1) if self.batch_first else layer_in
        return GRUOutput(output, torch.cat(h_n), GateTrace(layers, steps_per_layer))

    def _run_layer(
        self, layer: int, x: Tensor, h_start: Tensor
    ) -> tuple[Tensor, tuple[GateStates, ...], list[Tensor]]:
        """One layer, all directions. ``x`` is ``(T, B, I)``, ``h_start`` is ``(D, B, H)``."""
        seq_len, batch, _ = x.shape
        d_count, hid = self.num_directions, self.hidden_size
        w_ih, w_hh, b_ih, b_hh = self._layer_params(layer)

        # Input projections of every step and direction in one product: (T, B, D, 3H).
        gi = F.linear(x, w_ih, b_ih).view(seq_len, batch, d_count, 3 * hid)
        if b_hh is not None:
            # b_hr and b_hz sit outside the reset gate, so they can join the input side once for all steps.
            gi = gi + F.pad(b_hh[:, : 2 * hid], (0, hid))
        if d_count == 2:
            gi = torch.stack([gi[:, :, 0], gi[:, :, 1].flip(0)], dim=1)  # reverse direction in reading order
        else:
            gi = gi.permute(0, 2, 1, 3)
        gi_rz = gi[..., : 2 * hid].contiguous()  # (T, D, B, 2H)
        gi_n = gi[..., 2 * hid :].contiguous()  # (T, D, B, H)
        w_hh_t = w_hh.transpose(1, 2)  # (D, H, 3H)
        w_rz = w_hh_t[..., : 2 * hid].contiguous()
        w_n = w_hh_t[..., 2 * hid :].contiguous()
        b_n = b_hh[:, None, 2 * hid :] if b_hh is not None else None  # (D, 1, H)

        h = h_start
        rs: list[Tensor] = []
        zs: list[Tensor] = []
        ns: list[Tensor] = []
        hs: list[Tensor] = []
        for s in range(seq_len):
            rz = torch.sigmoid(torch.baddbmm(gi_rz[s], h, w_rz))
            r, z = rz.chunk(2, dim=-1)
            hn = torch.bmm(h, w_n) if b_n is None else torch.baddbmm(b_n, h, w_n)
            n = torch.tanh(torch.addcmul(gi_n[s], r, hn))
            h = torch.lerp(n, h, z)  # (1 − z) ⊙ n + z ⊙ h_prev
            rs.append(r)
            zs.append(z)
            ns.append(n)
            hs.append(h)

        def by_position(items: list[Tensor]) -> list[Tensor]:
            stacked = torch.stack(items, dim=2)  # (D, B, T, H) in reading order
            per_dir = list(stacked.unbind(0))
            if d_count == 2:
                per_dir[1] = per_dir[1].flip(1)
            return per_dir

        r_d, z_d, n_d, h_d = by_position(rs), by_position(zs), by_position(ns), by_position(hs)
        states = tuple(
            GateStates(z=z_d[d], r=r_d[d], n=n_d[d], h=h_d[d], h0=h_start[d], reverse=d == 1)
            for d in range(d_count)
        )
        out = torch.cat(h_d, dim=-1).transpose(0, 1)  # (T, B, D·H)
        return out, states, hs
