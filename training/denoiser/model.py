"""THUNDER denoiser D(x_d, d, a) -> x0: a transformer decoder (paper Sec. 4.2).

Queries are the noisy parameter sequence (ALiBi in self-attention). Keys/values
of the cross-attention are [step token | audio tokens]: the sinusoidal
diffusion-step embedding concatenated along time with the audio features, each
through its own affine projection. The diagonal alignment mask lets frame i see
the step token and audio frame i only, and there is no positional encoding in
the cross-attention. With that mask the cross-attention is a two-key softmax per
frame; `aligned_cross_attention` computes exactly that in O(T) (a test checks it
against `scaled_dot_product_attention` with the explicit (T, T+1) mask).

The audio side of every layer's cross-attention (its keys and values) does not
depend on the diffusion step, so `context()` computes it once per request and
`step()` runs once per sampler step: the two ONNX graphs of the bundle.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from backend.contracts import N_PARAMS


@dataclass(frozen=True)
class DenoiserConfig:
    n_params: int = N_PARAMS
    audio_dim: int = 256  # speech-encoder feature size (from its config)
    d_model: int = 128
    n_layers: int = 8
    n_heads: int = 4
    d_ff: int = 512
    dropout: float = 0.1
    n_steps: int = 1000  # diffusion steps D (sinusoid period scale)
    p_uncond: float = 0.2  # audio -> learned null vector during training (CFG)
    deterministic: bool = False  # FlameFormer-like regression baseline (no noise input)
    # x0 = sqrt(ac_t) x_t + sqrt(1 - ac_t) F(x_t, t) (Karras et al. 2022's c_skip/c_out for
    # unit-variance data, i.e. v-prediction): at low noise the input passes through and the
    # network only corrects it. Without it the model must learn the identity through every
    # layer, and after 600-2,000 steps its t = 0 prediction still misses the clean input by
    # 0.5 mm per vertex and 2 mm of lip opening, blurring every sampler step (issue #15,
    # reports/denoiser-x0-by-t.md). False: checkpoints from before it load unchanged.
    precondition: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DenoiserConfig":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Head slopes of Press et al. (2022): 2^(-8 h / H), h = 1..H."""
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / n_heads) for h in range(n_heads)])


def alibi_bias(n_frames_like: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    """Symmetric (non-causal) ALiBi bias (H, T, T): -slope * |i - j|.

    `n_frames_like` is any tensor whose dim 1 is T, so exported graphs keep T dynamic.
    """
    pos = torch.cumsum(torch.ones_like(n_frames_like[0, :, 0]), 0)
    dist = (pos[:, None] - pos[None, :]).abs()
    return -slopes.to(dist)[:, None, None] * dist


def step_embedding(t: torch.Tensor, dim: int, period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (B, dim) of integer or float diffusion steps t (B,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def aligned_cross_attention(q, k_step, v_step, k_audio, v_audio, dropout_p: float = 0.0, training: bool = False):
    """Attention of frame i over {step token, audio frame i}: (B, H, T, dh) in and out.

    q, k_audio, v_audio: (B, H, T, dh); k_step, v_step: (B, H, 1, dh).
    """
    scale = q.shape[-1] ** -0.5
    s_step = (q * k_step).sum(-1) * scale
    s_audio = (q * k_audio).sum(-1) * scale
    w = torch.softmax(torch.stack([s_step, s_audio], dim=-1), dim=-1)
    w = F.dropout(w, dropout_p, training)
    return w[..., 0:1] * v_step + w[..., 1:2] * v_audio


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.reshape(b, t, n_heads, d // n_heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)


class DecoderLayer(nn.Module):
    """Pre-norm decoder layer: ALiBi self-attention, aligned cross-attention, FFN."""

    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        d, self.h, self.p = cfg.d_model, cfg.n_heads, cfg.dropout
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.self_out = nn.Linear(d, d)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)  # shared by step token and audio tokens
        self.cross_out = nn.Linear(d, d)
        self.ffn = nn.Sequential(nn.Linear(d, cfg.d_ff), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.d_ff, d))
        self.drop = nn.Dropout(cfg.dropout)

    def memory_kv(self, memory: torch.Tensor) -> torch.Tensor:
        """Keys and values (2, B, T, d) of memory tokens."""
        k, v = self.kv(memory).chunk(2, dim=-1)
        return torch.stack([k, v])

    def forward(self, x, bias, step_kv, audio_kv):
        p = self.p if self.training else 0.0
        q, k, v = (_heads(z, self.h) for z in self.qkv(self.norm1(x)).chunk(3, dim=-1))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)
        x = x + self.drop(self.self_out(_merge(a)))
        q = _heads(self.q(self.norm2(x)), self.h)
        a = aligned_cross_attention(
            q,
            _heads(step_kv[0], self.h),
            _heads(step_kv[1], self.h),
            _heads(audio_kv[0], self.h),
            _heads(audio_kv[1], self.h),
            p,
            self.training,
        )
        x = x + self.drop(self.cross_out(_merge(a)))
        return x + self.drop(self.ffn(self.norm3(x)))


class Denoiser(nn.Module):
    def __init__(self, cfg: DenoiserConfig = DenoiserConfig()):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.x_proj = nn.Linear(cfg.n_params, d)  # noisy parameters -> queries
        self.audio_proj = nn.Linear(cfg.audio_dim, d)  # audio features -> memory
        self.step_proj = nn.Linear(d, d)  # sinusoidal step -> step token
        self.null_audio = nn.Parameter(torch.randn(d) * 0.02)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layers))
        self.out_norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, cfg.n_params)
        self.register_buffer("slopes", alibi_slopes(cfg.n_heads), persistent=False)
        if cfg.precondition and not cfg.deterministic:
            from backend.samplers import Schedule

            ac = torch.as_tensor(Schedule(steps=cfg.n_steps).alphas_cumprod, dtype=torch.float32)
            self.register_buffer("skip", ac.sqrt(), persistent=False)
            self.register_buffer("scale", (1.0 - ac).sqrt(), persistent=False)

    def context(self, audio: torch.Tensor, null: torch.Tensor | None = None) -> torch.Tensor:
        """Per-layer audio keys/values (L, 2, B, T, d). `null` (B,) in {0, 1}: 1 = null audio."""
        mem = self.audio_proj(audio)
        if null is not None:
            m = null.to(mem.dtype)[:, None, None]
            mem = mem * (1.0 - m) + self.null_audio * m
        return torch.stack([layer.memory_kv(mem) for layer in self.layers])

    def step(self, x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """x0 prediction (B, T, P) from noisy x (B, T, P), steps t (B,), context (L, 2, B, T, d)."""
        h = self.x_proj(x)
        bias = alibi_bias(x, self.slopes)
        token = self.step_proj(step_embedding(t, self.cfg.d_model))[:, None, :]
        for i, layer in enumerate(self.layers):
            h = layer(h, bias, layer.memory_kv(token), ctx[i])
        out = self.out(self.out_norm(h))
        if hasattr(self, "skip"):
            out = self.skip[t][:, None, None] * x + self.scale[t][:, None, None] * out
        return out

    def forward(self, x, t, audio, null=None):
        return self.step(x, t, self.context(audio, null))


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
