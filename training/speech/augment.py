"""Audio augmentation for the speech encoder, so it holds on voices it has not heard.

Each call returns the augmented audio and the factor its timeline was stretched by
(phone labels are scaled with it). Tempo / pitch use soxr resampling (speed
changes both) and librosa's phase vocoder (tempo alone; pitch alone = both);
reverberation is a synthetic exponentially decaying noise impulse response.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr
from scipy.signal import fftconvolve

SR = 16000


@dataclass(frozen=True)
class AugmentConfig:
    p_speed: float = 0.5  # resample: pitch and tempo together
    speed: tuple = (0.88, 1.12)
    p_tempo: float = 0.15  # phase-vocoder stretch: tempo alone
    tempo: tuple = (0.85, 1.15)
    p_pitch: float = 0.15  # phase-vocoder + resample: pitch alone
    semitones: tuple = (-3.0, 3.0)
    p_reverb: float = 0.3
    rt60: tuple = (0.1, 0.6)
    p_noise: float = 0.5
    snr_db: tuple = (5.0, 30.0)
    gain_db: tuple = (-12.0, 6.0)


def speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster (higher and shorter)."""
    return soxr.resample(audio, SR * factor, SR).astype(np.float32)


def reverb(audio: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    n = int(rt60 * SR)
    t = np.arange(n) / SR
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    ir[0] = 1.0
    wet = fftconvolve(audio, ir / np.sqrt(np.sum(ir**2)))[: len(audio)]
    return wet.astype(np.float32)


def noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(len(audio))
    colour = rng.uniform(0.0, 0.98)  # 0 = white, near 1 = brown-ish (one-pole low-pass)
    from scipy.signal import lfilter

    shaped = lfilter([1.0], [1.0, -colour], white)
    p_sig = np.mean(audio**2) + 1e-10
    shaped *= np.sqrt(p_sig / (np.mean(shaped**2) + 1e-10) / 10 ** (snr_db / 10))
    return (audio + shaped).astype(np.float32)


def augment(
    audio: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()
) -> tuple[np.ndarray, float]:
    """-> (augmented audio, time stretch factor of its timeline)."""
    import librosa

    stretch = 1.0
    if rng.random() < cfg.p_speed:
        f = rng.uniform(*cfg.speed)
        audio, stretch = speed(audio, f), stretch / f
    if rng.random() < cfg.p_tempo:
        rate = rng.uniform(*cfg.tempo)
        audio = librosa.effects.time_stretch(audio, rate=rate).astype(np.float32)
        stretch /= rate
    if rng.random() < cfg.p_pitch:
        audio = librosa.effects.pitch_shift(audio, sr=SR, n_steps=rng.uniform(*cfg.semitones)).astype(np.float32)
    if rng.random() < cfg.p_reverb:
        audio = reverb(audio, rng.uniform(*cfg.rt60), rng)
    if rng.random() < cfg.p_noise:
        audio = noise(audio, rng.uniform(*cfg.snr_db), rng)
    audio = audio * 10 ** (rng.uniform(*cfg.gain_db) / 20)
    peak = np.abs(audio).max()
    return (audio / peak if peak > 1 else audio).astype(np.float32), stretch
