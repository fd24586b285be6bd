"""Numpy Griffin-Lim: log-mel (backend.features framing) -> 16 kHz waveform.

No pretrained neural vocoder is reachable here; this is what `/v1/listen` and
`thunder-train m2s listen` use. Fast Griffin-Lim (Perraudin et al. 2013,
momentum 0.99 as librosa) on the linear magnitude recovered from the mel by
non-negative least squares (multiplicative updates, no extra dependency).
"""
from __future__ import annotations

import numpy as np

from backend.contracts import FeatureConfig
from backend.features import hann_window, mel_filterbank, stft


def mel_to_magnitude(mel: np.ndarray, cfg: FeatureConfig = FeatureConfig(), n_iter: int = 30) -> np.ndarray:
    """Linear-amplitude mel (T, n_mels) -> non-negative magnitude (T, n_fft//2+1) with fb @ S ~= mel."""
    fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    mel = np.maximum(np.asarray(mel, dtype=np.float64), 0.0)
    gram = fb.T @ fb
    target = mel @ fb
    spec = np.maximum(target / (fb.sum(axis=0) + 1e-10), 1e-10)
    for _ in range(n_iter):  # Lee-Seung multiplicative updates keep S >= 0
        spec *= target / (spec @ gram + 1e-10)
    return spec


def istft(spec: np.ndarray, n_fft: int, hop_length: int, win_length: int | None = None) -> np.ndarray:
    """Inverse of backend.features.stft: (T, n_fft//2+1) -> T * hop samples (windowed overlap-add)."""
    win_length = win_length or n_fft
    window = np.zeros(n_fft)
    lo = (n_fft - win_length) // 2
    window[lo:lo + win_length] = hann_window(win_length)
    n_frames = spec.shape[0]
    frames = np.fft.irfft(spec, n=n_fft, axis=-1) * window
    length = (n_frames - 1) * hop_length + n_fft
    out = np.zeros(length)
    norm = np.zeros(length)
    for i in range(n_frames):  # T is small (100 per second): a loop is cheaper than index tricks
        out[i * hop_length:i * hop_length + n_fft] += frames[i]
        norm[i * hop_length:i * hop_length + n_fft] += window ** 2
    out /= np.maximum(norm, 1e-8)
    return out[n_fft // 2:n_fft // 2 + n_frames * hop_length]


def griffin_lim(magnitude: np.ndarray, cfg: FeatureConfig = FeatureConfig(), n_iter: int = 32,
                momentum: float = 0.99, seed: int = 0) -> np.ndarray:
    """Magnitude (T, n_fft//2+1) -> waveform (T * hop,) float32."""
    rng = np.random.default_rng(seed)
    angles = np.exp(2j * np.pi * rng.random(magnitude.shape))
    previous = 0.0
    for _ in range(n_iter):
        audio = istft(magnitude * angles, cfg.n_fft, cfg.hop_length, cfg.win_length)
        rebuilt = stft(audio, cfg.n_fft, cfg.hop_length, cfg.win_length, magnitude.shape[0])
        angles = rebuilt - (momentum / (1 + momentum)) * previous
        previous = rebuilt
        angles = angles / (np.abs(angles) + 1e-16)
    return istft(magnitude * angles, cfg.n_fft, cfg.hop_length, cfg.win_length).astype(np.float32)


def vocode(log_mel: np.ndarray, cfg: FeatureConfig = FeatureConfig(), n_iter: int = 32, seed: int = 0) -> np.ndarray:
    """Log-mel (T, n_mels) as backend.features.log_mel makes it -> 16 kHz mono float32 in [-1, 1]."""
    log_mel = np.asarray(log_mel)
    if log_mel.ndim != 2 or log_mel.shape[1] != cfg.n_mels:
        raise ValueError(f"expected log-mel of shape (T, {cfg.n_mels}), got {log_mel.shape}")
    audio = griffin_lim(mel_to_magnitude(np.exp(log_mel), cfg), cfg, n_iter=n_iter, seed=seed)
    peak = np.abs(audio).max()
    return audio / peak * 0.95 if peak > 0.95 else audio
