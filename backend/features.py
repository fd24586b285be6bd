"""Numpy log-mel front-end (the definition every model's audio side follows).

Framing: the signal is zero-padded by n_fft // 2 on both sides (centred frames,
as librosa >= 0.10 and torch.stft(center=True, pad_mode="constant")) and
`n_samples // hop_length` frames are kept, so frame k is centred on sample
k * hop_length: one second at 16 kHz is exactly 100 frames and motion frame j
(25 fps) lines up with mel frames 4j .. 4j+3. Magnitude (not power) spectrum,
Slaney mel filters (librosa's default), natural log with a floor.

`training.speech.features.LogMel` is the torch twin (agrees within 1e-4, tested).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from backend.contracts import FeatureConfig


def _hz_to_mel(f):
    """Slaney's mel scale: linear below 1 kHz, log above (librosa htk=False)."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float64 Slaney-normalised triangular filters (= librosa.filters.mel)."""
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    mel_pts = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_pts)
    ramps = mel_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_pts[2 : n_mels + 2] - mel_pts[:n_mels]))[:, None]
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=8)
def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window (torch.hann_window / scipy 'hann' default)."""
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
    w.setflags(write=False)
    return w


def stft(
    audio: np.ndarray, n_fft: int, hop_length: int, win_length: int | None = None, n_frames: int | None = None
) -> np.ndarray:
    """Complex STFT (n_frames, n_fft // 2 + 1), centred zero-padded frames.

    n_frames defaults to 1 + len // hop (librosa's count); pass fewer to trim.
    """
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio of shape (N,), got {audio.shape}")
    win_length = win_length or n_fft
    window = np.zeros(n_fft)
    lo = (n_fft - win_length) // 2
    window[lo : lo + win_length] = hann_window(win_length)
    count = 1 + len(audio) // hop_length
    n_frames = count if n_frames is None else min(n_frames, count)
    padded = np.pad(audio, (n_fft // 2, n_fft // 2))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length][:n_frames]
    return np.fft.rfft(frames * window, axis=-1)


def n_mel_frames(n_samples: int, cfg: FeatureConfig = FeatureConfig()) -> int:
    return n_samples // cfg.hop_length


def mel_spectrogram(audio: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Linear-amplitude mel spectrogram (n_samples // hop, n_mels), float64."""
    spec = np.abs(stft(audio, cfg.n_fft, cfg.hop_length, cfg.win_length, n_mel_frames(len(audio), cfg)))
    fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    return spec @ fb.T


def log_mel(audio: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Log-mel features (n_samples // hop, n_mels) float32 of 16 kHz mono audio."""
    if len(audio) < cfg.hop_length:
        raise ValueError(f"audio too short for one feature frame: {len(audio)} samples < {cfg.hop_length}")
    mel = mel_spectrogram(audio, cfg)
    return np.log(np.maximum(mel, cfg.log_floor)).astype(np.float32)


def band_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """The lip-sync score: mean over mel bands of the Pearson correlation in time of two
    (T, n_mels) log-mel arrays (what M2S hears from a take vs the input speech). The engine
    ranks takes by it and the evaluation reports it, so both compute it here."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0)) + 1e-8
    return float(((a * b).sum(0) / den).mean())
