"""Mesh-to-speech model F(V_mouth^{1:T}, s) -> (mel, unit logits) (THUNDER Sec. 3.2).

inputs 25 Hz -> MLP -> upsample x2 (50 Hz) -> conformer -> unit classifier (50 Hz)
                                                        -> [h | speaker] -> mel head, 2 frames per step (100 Hz)

`M2SFromParams` puts the input space in front: x = [psi | jaw] -> region vertices
(mouth2s: the head's mouth mask, face2s: all vertices) or the parameters
themselves (exp2s) or nothing (noface: the floor that sees no face), offsets
from the template standardised with training-set statistics. It is the module
that trains, evaluates and exports (one graph from exp/jaw to mel and units).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from backend.contracts import N_EXP, N_JAW
from training.m2s.vertices import RegionVertices
from training.speech.conformer import Conformer

VARIANTS = ("mouth2s", "face2s", "exp2s", "noface")


@dataclass
class M2SConfig:
    variant: str = "mouth2s"
    dim: int = 256
    layers: int = 4
    heads: int = 4
    kernel: int = 15
    dropout: float = 0.1
    n_units: int = 100
    n_mels: int = 80
    speaker_dim: int = 256

    @classmethod
    def from_dict(cls, d: dict) -> "M2SConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return asdict(self)


class M2S(nn.Module):
    """inputs (B, T, n_in) at 25 Hz, speaker (B, 256) -> mel (B, 4T, n_mels), unit_logits (B, 2T, n_units)."""

    def __init__(self, cfg: M2SConfig, n_in: int):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.mlp = nn.Sequential(nn.Linear(n_in, d), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(d, d))
        self.conformer = Conformer(d, cfg.layers, cfg.heads, cfg.kernel, cfg.dropout)
        self.unit_head = nn.Linear(d, cfg.n_units)
        self.speaker = nn.Linear(cfg.speaker_dim, d)
        self.mel_head = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 2 * cfg.n_mels))
        self.register_buffer("mel_mean", torch.zeros(cfg.n_mels))  # set from training data: a sane start

    def forward(self, inputs: torch.Tensor, speaker: torch.Tensor):
        b, t, _ = inputs.shape
        h = self.mlp(inputs)
        h = h.unsqueeze(2).expand(b, t, 2, h.shape[-1]).reshape(b, 2 * t, h.shape[-1])  # 25 -> 50 Hz
        h = self.conformer(h)[-1]
        unit_logits = self.unit_head(h)
        s = self.speaker(speaker).unsqueeze(1).expand(b, 2 * t, h.shape[-1])
        mel = self.mel_head(torch.cat([h, s], dim=-1)).reshape(b, 4 * t, self.cfg.n_mels) + self.mel_mean
        return mel, unit_logits


class M2SFromParams(nn.Module):
    """exp (B, T, 50), jaw (B, T, 3), speaker (B, 256) -> mel (B, 4T, 80), unit_logits (B, 2T, U)."""

    def __init__(self, cfg: M2SConfig, head_dir=None, region_indices=None):
        super().__init__()
        if cfg.variant not in VARIANTS:
            raise ValueError(f"unknown M2S variant {cfg.variant!r}; choose from {', '.join(VARIANTS)}")
        self.cfg = cfg
        if cfg.variant in ("mouth2s", "face2s"):
            if head_dir is None:
                raise ValueError(f"{cfg.variant} needs the head model folder (--head)")
            self.vertices = RegionVertices(head_dir, region_indices if cfg.variant == "mouth2s" else None)
            n_in = 3 * self.vertices.n_vertices
        else:
            self.vertices = None
            n_in = N_EXP + N_JAW if cfg.variant == "exp2s" else 1
        self.register_buffer("in_mean", torch.zeros(n_in))
        self.register_buffer("in_std", torch.ones(n_in))
        self.m2s = M2S(cfg, n_in)

    def raw_inputs(self, exp: torch.Tensor, jaw: torch.Tensor) -> torch.Tensor:
        """Unstandardised input features (B, T, n_in) of the variant's input space."""
        x = torch.cat([exp, jaw], dim=-1)
        if self.vertices is not None:
            offsets = self.vertices(x) - self.vertices.v_template
            return offsets.reshape(x.shape[0], x.shape[1], -1)
        if self.cfg.variant == "noface":
            return x[..., :1] * 0.0
        return x

    def forward(self, exp: torch.Tensor, jaw: torch.Tensor, speaker: torch.Tensor):
        inputs = (self.raw_inputs(exp, jaw) - self.in_mean) / self.in_std
        return self.m2s(inputs, speaker)
