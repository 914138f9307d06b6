"""The network's shape and input in one record (:class:`ModelConfig`), stored in the model card.

Kept apart from :mod:`viewer.model.network` so preprocessing, training and the command line can read it without
importing the network (or each other).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from viewer.model.hu_centring import HuCentring

DEFAULT_WINDOWS: tuple[tuple[float, float], ...] = ((40.0, 80.0), (80.0, 200.0), (600.0, 2800.0))

#: What runs between the slice features and the slice head (see :class:`~viewer.model.network.SliceGRUNet`):
#: ``bigru`` the shipped bidirectional :class:`~viewer.model.gated_gru.GatedGRU` with log-mean-exp pooling;
#: ``bigru_attn`` the same GRU with the study logit from attention-pooled slice states; ``bilstm`` a
#: bidirectional ``torch.nn.LSTM``; ``pool`` no recurrence (the slice head reads the CNN features). Only the GRU
#: kinds have the gate traces and hidden-state track of :mod:`viewer.model.explanations`.
SEQUENCE_KINDS: tuple[str, ...] = ("bigru", "bigru_attn", "bilstm", "pool")
DEFAULT_SEQUENCE = "bigru"
GRU_SEQUENCES: tuple[str, ...] = ("bigru", "bigru_attn")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the network's shape and its input, stored in the model card.

    Attributes
    ----------
    input_size:
        In-plane side of each model slice (pixels).
    windows:
        ``(center, width)`` HU windows, one input channel each.
    target_spacing_mm:
        Thin series are averaged into slabs of about this thickness.
    encoder_channels:
        Channels of the CNN's stem and of each of its stages (each stage halves the resolution).
    hidden_size:
        GRU (or LSTM) units per direction.
    num_layers:
        Stacked GRU (or LSTM) layers.
    dropout:
        Dropout on slice features and on the GRU output (training only).
    lse_sharpness:
        ``r`` of the log-mean-exp pooling.
    operating_threshold:
        Study probability at or above which the study is called positive.
    sequence:
        One of :data:`SEQUENCE_KINDS`; the shipped models are ``bigru``, which the card leaves unstated (cards
        written before the field existed read as ``bigru``, and a ``bigru`` card is written as before).
    hu_reference, hu_tolerance:
        Soft-tissue median HU of the training series and the offset left alone around it (see
        :mod:`viewer.model.hu_centring`); None reads every series as it is. Left out of the card when unset.
    """

    input_size: int = 192
    windows: tuple[tuple[float, float], ...] = DEFAULT_WINDOWS
    target_spacing_mm: float = 5.0
    encoder_channels: tuple[int, ...] = (16, 32, 64, 128)
    hidden_size: int = 96
    num_layers: int = 1
    dropout: float = 0.2
    lse_sharpness: float = 5.0
    operating_threshold: float = 0.5
    sequence: str = DEFAULT_SEQUENCE
    hu_reference: float | None = None
    hu_tolerance: float = 0.0

    def __post_init__(self) -> None:
        if len(self.encoder_channels) < 2:
            raise ValueError("encoder_channels needs a stem and at least one stage")
        if self.input_size % (2 ** len(self.encoder_channels)) != 0:
            raise ValueError(
                f"input_size {self.input_size} must be divisible by 2**{len(self.encoder_channels)} "
                "(each encoder stage halves it)"
            )
        if not 0.0 < self.operating_threshold < 1.0:
            raise ValueError("operating_threshold is a probability in (0, 1)")
        if self.lse_sharpness <= 0:
            raise ValueError("lse_sharpness must be positive")
        if self.sequence not in SEQUENCE_KINDS:
            raise ValueError(f"sequence must be one of {SEQUENCE_KINDS}, got {self.sequence!r}")
        if self.hu_reference is not None:
            HuCentring(float(self.hu_reference), float(self.hu_tolerance))

    @property
    def centring(self) -> HuCentring | None:
        """The per-series HU re-centring the model was made with, if any."""
        if self.hu_reference is None:
            return None
        return HuCentring(float(self.hu_reference), float(self.hu_tolerance))

    @property
    def in_channels(self) -> int:
        return len(self.windows)

    @property
    def feature_size(self) -> int:
        """Length of a slice's feature vector: the last stage's channels, mean- and max-pooled."""
        return 2 * self.encoder_channels[-1]

    @property
    def has_gated_gru(self) -> bool:
        """Whether the sequence part is a :class:`~viewer.model.gated_gru.GatedGRU` (gate traces, hidden track)."""
        return self.sequence in GRU_SEQUENCES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); ``sequence`` only when it is not the default ``bigru``, the HU
        re-centring only when set, so older cards are written as they were."""
        data = asdict(self)
        if data["sequence"] == DEFAULT_SEQUENCE:
            del data["sequence"]
        if data["hu_reference"] is None:
            del data["hu_reference"], data["hu_tolerance"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing ones take defaults."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        values = dict(data)
        if "windows" in values:
            values["windows"] = tuple((float(c), float(w)) for c, w in values["windows"])
        if "encoder_channels" in values:
            values["encoder_channels"] = tuple(int(c) for c in values["encoder_channels"])
        return cls(**values)
