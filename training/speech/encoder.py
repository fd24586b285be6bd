"""Speech encoder A(w): 16 kHz audio -> hidden states at 50 Hz -> features a at 25 Hz.

Stands in for the paper's frozen Wav2Vec 2.0. Three kinds share one interface
(`hidden_50(audio) -> list of layer outputs (B, N // 320, C)`):

- "wav2vec2": transformers' Wav2Vec2 architecture at a CPU-sized config, trained
  here on frame-level phones (training.speech.train_encoder).
- "logmel": log-mel (backend.features definition) -> conv subsampling to 50 Hz ->
  conformer; the cheaper alternative the issue allows.
- a real pretrained Wav2Vec2 / HuBERT folder (transformers format), frozen, via
  `load_encoder(PATH)` / `--audio-encoder PATH`; feature size from its config.

50 Hz -> 25 Hz is the mean of each pair of frames (linear resampling by 2).
Audio lengths are padded so that N samples always give N // 320 frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.corpus.phones import INVENTORY
from training.speech.conformer import Conformer
from training.speech.features import LogMel

HOP_50 = 320  # samples per 50 Hz frame
HOP_25 = 640  # samples per 25 Hz frame (one motion frame)


@dataclass
class EncoderConfig:
    kind: str = "wav2vec2"  # wav2vec2 | logmel
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    ff: int = 1024
    conv_dim: int = 256  # wav2vec2 feature-extractor channels
    feat_extract_norm: str = "group"
    dropout: float = 0.1
    n_phones: int = len(INVENTORY)
    feature_layer: int = -1  # which layer gives the 25 Hz features a

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _wav2vec2_config(cfg: EncoderConfig):
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=cfg.hidden,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        intermediate_size=cfg.ff,
        conv_dim=(cfg.conv_dim,) * 7,
        feat_extract_norm=cfg.feat_extract_norm,
        num_conv_pos_embeddings=64,
        num_conv_pos_embedding_groups=16,
        do_stable_layer_norm=cfg.feat_extract_norm == "layer",
        hidden_dropout=cfg.dropout,
        attention_dropout=cfg.dropout,
        activation_dropout=0.0,
        feat_proj_dropout=cfg.dropout,
        layerdrop=0.0,
        mask_time_prob=0.05,
        apply_spec_augment=True,
    )


def _fit_length(x: torch.Tensor, n: int) -> torch.Tensor:
    """Trim or edge-pad (B, T, C) to exactly n frames."""
    if x.shape[1] >= n:
        return x[:, :n]
    return torch.cat([x, x[:, -1:].expand(-1, n - x.shape[1], -1)], dim=1)


class TransformersBackbone(nn.Module):
    """A transformers Wav2Vec2 / HuBERT model as 50 Hz layer outputs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.dim = model.config.hidden_size
        self.n_layers = model.config.num_hidden_layers

    def forward(self, audio: torch.Tensor) -> list[torch.Tensor]:
        n = audio.shape[-1] // HOP_50
        # receptive field 400 samples at stride 320: pad 40 each side so frame j is centred on 320 j + 160
        out = self.model(F.pad(audio, (40, 40)), output_hidden_states=True)
        return [_fit_length(h, n) for h in out.hidden_states[1:]]


class LogMelBackbone(nn.Module):
    """log-mel 100 Hz -> conv stride 2 -> conformer at 50 Hz."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.dim, self.n_layers = cfg.hidden, cfg.layers
        self.logmel = LogMel()
        self.subsample = nn.Sequential(
            nn.Conv1d(80, cfg.hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(cfg.hidden, cfg.hidden, 3, stride=2, padding=1),
            nn.GELU(),
        )
        self.conformer = Conformer(cfg.hidden, cfg.layers, cfg.heads, kernel=15, dropout=cfg.dropout)

    def forward(self, audio: torch.Tensor) -> list[torch.Tensor]:
        n = audio.shape[-1] // HOP_50
        mel = (self.logmel(audio) + 5.0) / 4.0  # roughly zero-mean, unit-scale log-mel
        x = self.subsample(mel.transpose(1, 2)).transpose(1, 2)
        return self.conformer(_fit_length(x, n))


class SpeechEncoder(nn.Module):
    """Backbone + frame-level phone head (used only while training the encoder)."""

    def __init__(self, cfg: EncoderConfig, backbone: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        if backbone is None:
            if cfg.kind == "wav2vec2":
                from transformers import Wav2Vec2Model

                backbone = TransformersBackbone(Wav2Vec2Model(_wav2vec2_config(cfg)))
            elif cfg.kind == "logmel":
                backbone = LogMelBackbone(cfg)
            else:
                raise ValueError(f"unknown encoder kind {cfg.kind!r} (wav2vec2, logmel)")
        self.backbone = backbone
        self.dim = backbone.dim
        self.n_layers = backbone.n_layers
        self.phone_head = nn.Linear(self.dim, cfg.n_phones)

    def hidden_50(self, audio: torch.Tensor) -> list[torch.Tensor]:
        """(B, N) audio -> list over layers of (B, N // 320, C)."""
        if audio.dim() != 2:
            raise ValueError(f"expected audio (B, N), got {tuple(audio.shape)}")
        return self.backbone(audio)

    def features_25(self, audio: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """(B, N) -> (B, N // 640, C): the speech features a^{1:T} at the motion rate."""
        h = self.hidden_50(audio)[self.cfg.feature_layer if layer is None else layer]
        t = audio.shape[-1] // HOP_25
        return h[:, : 2 * t].reshape(h.shape[0], t, 2, h.shape[2]).mean(dim=2)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Phone logits at 50 Hz (B, N // 320, n_phones)."""
        return self.phone_head(self.hidden_50(audio)[-1])


def load_pretrained(folder: str | Path) -> SpeechEncoder:
    """A local transformers Wav2Vec2 / HuBERT folder as a frozen SpeechEncoder (no phone head training)."""
    from transformers import AutoConfig, AutoModel

    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder} is not a transformers model folder (no config.json)")
    config = AutoConfig.from_pretrained(folder)
    if config.model_type == "whisper":  # `thunder-train whisper convert`: the encoder alone
        from training.speech.whisper import WhisperBackbone, load

        backbone = WhisperBackbone(load(folder))
    elif config.model_type in ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "wav2vec2-conformer"):
        backbone = TransformersBackbone(AutoModel.from_pretrained(folder))
    else:
        raise ValueError(f"{folder}: model_type {config.model_type!r} is not a speech encoder")
    cfg = EncoderConfig(kind=f"pretrained:{config.model_type}", hidden=backbone.dim, layers=backbone.n_layers)
    model = SpeechEncoder(cfg, backbone).eval()
    for p in model.parameters():  # frozen by default (THUNDER-F); the denoiser's -T option unfreezes
        p.requires_grad_(False)
    return model


def load_encoder(path: str | Path) -> SpeechEncoder:
    """Our checkpoint (`encoder.pt` / a run folder) or a transformers folder -> frozen encoder (eval)."""
    path = Path(path)
    if path.is_dir() and (path / "config.json").exists():
        return load_pretrained(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.exists():
        raise FileNotFoundError(f"no speech encoder at {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = SpeechEncoder(EncoderConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def config_dict(model: SpeechEncoder) -> dict:
    return asdict(model.cfg)
