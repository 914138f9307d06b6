"""The slice-GRU: a small 2D CNN per slice, a bidirectional :class:`GatedGRU` across slices, per-slice logits and
a study logit pooled from them.

``ModelConfig.sequence`` swaps the middle part for the ablation (:mod:`viewer.model.ablation`): ``bigru`` (the
shipped one), ``bigru_attn`` (same GRU, study logit from attention-pooled slice states), ``bilstm`` or ``pool``
(no recurrence: the slice head reads the CNN features). A ``bigru`` network's modules, tensor names and outputs
are those of the network before the field existed.

Pooling is a smooth maximum (log-mean-exp with sharpness ``r``, Pinheiro & Collobert 2015)::

    study = (1/r) · log( (1/T) Σ_t exp(r · s_t) )

It lies between the mean and the max of the slice logits, so the study is positive only when some slices are,
the slice logits keep their meaning (they are trained with slice labels and the study follows them), and its
gradient is ``softmax(r · s)``: the study's saliency flows to the slices that carry the finding. The ``1/T`` keeps
the value from growing with the slice count. It has no weights that could learn to ignore slices, which attention
pooling can.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from viewer.model.config import ModelConfig
from viewer.model.gated_gru import GatedGRU, GateTrace


def _conv_bn(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out)]


class EncoderStage(nn.Module):
    """Downsampling conv-BN-ReLU, then a residual conv-BN block: ``relu(x + bn(conv(x)))``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.down = nn.Sequential(*_conv_bn(c_in, c_out, 2), nn.ReLU(inplace=True))
        self.residual = nn.Sequential(*_conv_bn(c_out, c_out, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = self.down(x)
        return F.relu(x + self.residual(x))


class SliceEncoder(nn.Module):
    """Windowed slice ``(N, channels, S, S)`` → feature vector ``(N, 2 · channels[-1])``: the last stage's map
    pooled by its mean and by its maximum over the slice.

    The maximum is there for small findings: a 5 mm bleed fills a few cells of the final grid, and averaging over
    the whole slice would dilute it into the noise of the other cells (with the mean alone the encoder missed
    most small and thin bleeds on the phantoms).
    """

    def __init__(self, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_channels, channels[0], 2), nn.ReLU(inplace=True))
        self.stages = nn.ModuleList(
            EncoderStage(a, b) for a, b in zip(channels[:-1], channels[1:], strict=True)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for stage in self.stages:
            nn.init.zeros_(stage.residual[1].weight)  # residual branch starts as identity
        # Channels-last lets oneDNN (CPU) and cuDNN pick faster convolutions: `gru-viewer bench model` times a
        # training step both ways (encoder_layout). Same results to float rounding. The input is converted, not the
        # weights, so saved weights keep PyTorch's default layout.
        self.memory_format = torch.channels_last

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x.contiguous(memory_format=self.memory_format))
        for stage in self.stages:
            x = stage(x)
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


@dataclass
class NetOutput:
    """What :class:`SliceGRUNet` computes for a batch of series.

    Attributes
    ----------
    slice_logits:
        ``(batch, slices)``.
    study_logit:
        ``(batch,)``.
    hidden:
        ``(batch, slices, 2 · hidden)``: last GRU layer, forward states then reverse, in the autograd graph (the
        LSTM's output for ``bilstm``, the slice features for ``pool``).
    trace:
        The :class:`GateTrace` of every GRU layer and direction (in the graph; see ``trace.state_gradient``);
        empty for the sequences without a :class:`GatedGRU`.
    features:
        ``(batch, slices, feature_size)``: the encoder's slice features.
    """

    slice_logits: Tensor
    study_logit: Tensor
    hidden: Tensor
    trace: GateTrace
    features: Tensor = field(repr=False)

    def detach(self) -> NetOutput:
        """A copy without the autograd graph."""
        return NetOutput(
            self.slice_logits.detach(),
            self.study_logit.detach(),
            self.hidden.detach(),
            self.trace.detach(),
            self.features.detach(),
        )

    @property
    def slice_probabilities(self) -> Tensor:
        return torch.sigmoid(self.slice_logits)

    @property
    def study_probability(self) -> Tensor:
        return torch.sigmoid(self.study_logit)


def lse_pool(logits: Tensor, sharpness: float, dim: int = -1) -> Tensor:
    """Log-mean-exp: ``(1/r) · log(mean(exp(r · x)))``, a smooth maximum between the mean and the max."""
    n = logits.shape[dim]
    return (torch.logsumexp(sharpness * logits, dim=dim) - math.log(n)) / sharpness


def lse_weights(logits: Tensor, sharpness: float, dim: int = -1) -> Tensor:
    """Each slice's share of the log-mean-exp study logit: ``softmax(r · s)``, which is also ``∂ study / ∂ s_t``.

    The slices with the largest shares are the ones the study score rests on directly.
    """
    return torch.softmax(sharpness * logits, dim=dim)


ATTENTION_SIZE = 64


class AttentionPool(nn.Module):
    """Study logit from attention-pooled slice states: ``head(Σ_t a_t h_t)``, ``a = softmax_t(w · tanh(V h_t))``

    (Ilse et al. 2018, without the gating). Unlike log-mean-exp its weights can learn to ignore slices; it is
    here as an ablation, not in the shipped model.
    """

    def __init__(self, size: int, attention_size: int = ATTENTION_SIZE) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(size, attention_size), nn.Tanh(), nn.Linear(attention_size, 1))
        self.head = nn.Linear(size, 1)

    def weights(self, states: Tensor) -> Tensor:
        """``(batch, slices)`` attention weights, summing to 1 over the slices."""
        return torch.softmax(self.score(states).squeeze(-1), dim=-1)

    def forward(self, states: Tensor) -> Tensor:
        pooled = (self.weights(states).unsqueeze(-1) * states).sum(dim=1)
        return self.head(pooled).squeeze(-1)


class SliceGRUNet(nn.Module):
    """Slice encoder → bidirectional :class:`GatedGRU` over the slices → per-slice logits → LSE study logit.

    A sequence is the model slices of one series in slice order; the forward direction reads head to foot (in
    the order the volume is sorted), the reverse direction foot to head.

    Parameters
    ----------
    config:
        Sizes, input and threshold; see :class:`ModelConfig`.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        cfg = self.config
        self.encoder = SliceEncoder(cfg.in_channels, cfg.encoder_channels)
        between = cfg.dropout if cfg.num_layers > 1 else 0.0
        # Registered in this order (encoder, gru, dropout, slice_head) so a bigru network is the network it was.
        self.gru: GatedGRU | None = None
        self.lstm: nn.LSTM | None = None
        self.attention: AttentionPool | None = None
        shape = {"num_layers": cfg.num_layers, "bidirectional": True, "batch_first": True, "dropout": between}
        if cfg.has_gated_gru:
            self.gru = GatedGRU(cfg.feature_size, cfg.hidden_size, **shape)
        elif cfg.sequence == "bilstm":
            self.lstm = nn.LSTM(cfg.feature_size, cfg.hidden_size, **shape)
        self.dropout = nn.Dropout(cfg.dropout)
        state_size = cfg.feature_size if cfg.sequence == "pool" else 2 * cfg.hidden_size
        self.slice_head = nn.Linear(state_size, 1)
        nn.init.constant_(self.slice_head.bias, -2.0)  # most slices are negative
        if cfg.sequence == "bigru_attn":
            self.attention = AttentionPool(state_size)
        # The normal series the hidden-state track compares with (viewer/model/reference.py); not part of the
        # weights: empty until load_weights attaches the file named on the card.
        self.register_buffer("reference_features", torch.zeros(0, cfg.feature_size), persistent=False)

    def layer_names_top_down(self) -> list[str]:
        """Named blocks from the output to the input: ``slice_head``, ``gru``, encoder stages, ``encoder.stem``

        (``attention`` before ``slice_head``, ``lstm`` instead of ``gru``, nothing in its place for ``pool``)."""
        stages = [f"encoder.stages.{i}" for i in reversed(range(len(self.encoder.stages)))]
        top = ["attention"] if self.attention is not None else []
        recurrent = [name for name in ("gru", "lstm") if getattr(self, name) is not None]
        return [*top, "slice_head", *recurrent, *stages, "encoder.stem"]

    def encode(self, slices: Tensor, chunk: int = 64) -> Tensor:
        """Slice features: ``(..., channels, S, S)`` → ``(..., feature_size)``, ``chunk`` slices at a time.

        Chunking keeps activations cache-sized at inference; with gradients on, the graph still spans all chunks.
        """
        lead = slices.shape[:-3]
        flat = slices.reshape(-1, *slices.shape[-3:])
        if flat.shape[0] <= chunk:
            feats = self.encoder(flat)
        else:
            feats = torch.cat([self.encoder(part) for part in flat.split(chunk)])
        return feats.reshape(*lead, feats.shape[-1])

    def forward_features(self, features: Tensor) -> NetOutput:
        """GRU, slice head and pooling on slice features ``(batch, slices, feature_size)``."""
        if features.dim() != 3:
            raise ValueError(f"expected (batch, slices, features), got {tuple(features.shape)}")
        inputs = self.dropout(features)
        if self.gru is not None:
            gru_out = self.gru(inputs)
            states, trace = gru_out.output, gru_out.trace
        elif self.lstm is not None:
            states, trace = self.lstm(inputs)[0], GateTrace([], [])
        else:
            states, trace = inputs, GateTrace([], [])
        read = self.dropout(states) if self.config.sequence != "pool" else states
        slice_logits = self.slice_head(read).squeeze(-1)
        if self.attention is not None:
            study_logit = self.attention(read)
        else:
            study_logit = lse_pool(slice_logits, self.config.lse_sharpness)
        return NetOutput(slice_logits, study_logit, states, trace, features)

    def forward(self, x: Tensor) -> NetOutput:
        """``(slices, channels, S, S)`` (one series) or ``(batch, slices, channels, S, S)``."""
        if x.dim() == 4:
            x = x.unsqueeze(0)
        if x.dim() != 5:
            raise ValueError(f"expected (slices, C, S, S) or (batch, slices, C, S, S), got {tuple(x.shape)}")
        return self.forward_features(self.encode(x))
