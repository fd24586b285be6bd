"""Conformer blocks (Gulati et al. 2020), written to export to ONNX with dynamic time.

Attention is spelled out with matmul/softmax (no nn.MultiheadAttention, whose
legacy export bakes the sequence length). No absolute positions: the depthwise
convolution gives each block relative position, so windows of 125 frames in
training generalise to clips of any length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * mult),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(dim * mult, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x):
        return self.net(x)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) * (d // self.heads) ** -0.5, dim=-1)
        y = (self.drop(att) @ v).transpose(1, 2).reshape(b, t, d)
        return self.drop(self.out(y))


class ConvModule(nn.Module):
    def __init__(self, dim: int, kernel: int = 15, dropout: float = 0.1):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Conv1d(dim, 2 * dim, 1)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.bn = nn.GroupNorm(1, dim)  # batch-independent (BatchNorm misbehaves on small CPU batches)
        self.pointwise_out = nn.Conv1d(dim, dim, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        y = F.glu(self.pointwise_in(self.norm(x).transpose(1, 2)), dim=1)
        y = self.pointwise_out(F.silu(self.bn(self.depthwise(y))))
        return self.drop(y.transpose(1, 2))


class ConformerBlock(nn.Module):
    def __init__(self, dim: int = 256, heads: int = 4, kernel: int = 15, dropout: float = 0.1):
        super().__init__()
        self.ff1 = FeedForward(dim, dropout=dropout)
        self.att = SelfAttention(dim, heads, dropout)
        self.conv = ConvModule(dim, kernel, dropout)
        self.ff2 = FeedForward(dim, dropout=dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        x = x + 0.5 * self.ff1(x)
        x = x + self.att(x)
        x = x + self.conv(x)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class Conformer(nn.Module):
    """(B, T, dim) -> list of each block's output (B, T, dim)."""

    def __init__(self, dim: int = 256, layers: int = 4, heads: int = 4, kernel: int = 15, dropout: float = 0.1):
        super().__init__()
        self.blocks = nn.ModuleList(ConformerBlock(dim, heads, kernel, dropout) for _ in range(layers))

    def forward(self, x) -> list[torch.Tensor]:
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return outs
