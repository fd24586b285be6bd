"""Torch log-mel, the twin of `backend.features.log_mel` (same framing, filters, floor).

The STFT is a strided conv1d with windowed DFT kernels rather than torch.stft so
the module exports to ONNX as plain Conv/MatMul (no STFT op needed) and runs in
any graph that starts from audio.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backend.contracts import FeatureConfig
from backend.features import hann_window, mel_filterbank


class LogMel(nn.Module):
    """audio (B, N) float32 at cfg.sample_rate -> log-mel (B, N // hop, n_mels)."""

    def __init__(self, cfg: FeatureConfig = FeatureConfig()):
        super().__init__()
        self.cfg = cfg
        n_fft, win = cfg.n_fft, cfg.win_length
        window = np.zeros(n_fft)
        lo = (n_fft - win) // 2
        window[lo : lo + win] = hann_window(win)
        k = np.arange(n_fft // 2 + 1)[:, None] * np.arange(n_fft)[None, :]
        angle = 2.0 * np.pi * k / n_fft
        kernels = np.concatenate([np.cos(angle) * window, -np.sin(angle) * window])[:, None, :]
        self.register_buffer("dft", torch.from_numpy(kernels).float(), persistent=False)
        fb = mel_filterbank(cfg.sample_rate, n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
        self.register_buffer("fb", torch.from_numpy(np.ascontiguousarray(fb.T)).float(), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        n_frames = audio.shape[-1] // cfg.hop_length
        x = F.pad(audio.unsqueeze(1), (cfg.n_fft // 2, cfg.n_fft // 2))
        spec = F.conv1d(x, self.dft, stride=cfg.hop_length)[..., :n_frames]  # (B, 2F, T)
        re, im = spec.chunk(2, dim=1)
        mag = torch.sqrt(torch.clamp(re * re + im * im, min=1e-20))
        mel = mag.transpose(1, 2) @ self.fb
        return torch.log(torch.clamp(mel, min=cfg.log_floor))
