"""Motion weakly tied to the audio, drawn at random: blinks, brows, mood, noise.

One utterance has many plausible faces: these tracks come from their own random
stream, so two draws differ above the mouth while the lips (articulation) agree.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .phones import VOWELS

BLINK_REFRACTORY = 0.8  # s: no blink right after another
BLINK_CLOSE, BLINK_HOLD, BLINK_OPEN = 0.08, 0.04, 0.16  # s
BROW_PROB = 0.35  # chance a stressed syllable gets a brow raise (x brow_activity)
MOOD_TAU = 2.0  # s: time scale of mood drift
MOOD_SD = 0.12


def _bump(t, start, rise, hold, fall):
    up = np.clip((t - start) / rise, 0, 1)
    down = np.clip(1 - (t - start - rise - hold) / fall, 0, 1)
    y = np.minimum(up, down)
    return y * y * (3 - 2 * y)  # smoothstep: no corners


def blinks(t: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson blink onsets with a refractory time."""
    out = np.zeros_like(t)
    now = rng.uniform(0, 1.0 / max(rate, 1e-3))
    while now < t[-1]:
        out = np.maximum(out, _bump(t, now, BLINK_CLOSE, BLINK_HOLD, BLINK_OPEN) * rng.uniform(0.85, 1.0))
        now += BLINK_REFRACTORY + rng.exponential(1.0 / max(rate, 1e-3))
    return out


def _smooth_noise(n: int, rate: int, tau: float, sd: float, rng) -> np.ndarray:
    """Slow Gaussian noise (time scale tau s), made at 20 Hz and interpolated up to `rate`.
    Scaled by the std of the whole generated stretch, so short clips are not blown up."""
    low = 20
    m = n * low // rate + 2
    full = gaussian_filter1d(rng.normal(0, 1, m + 8 * int(tau * low) + 8), tau * low / 2, mode="wrap")
    x = np.interp(np.arange(n) / rate, np.arange(m) / low, full[:m])
    return sd * x / max(float(full.std()), 1e-9)


def upper_face(t: np.ndarray, accents: list[float], style: dict, rng: np.random.Generator) -> dict:
    """Control tracks (name -> (N,)) at the sample times `t` (s)."""
    rate = int(round(1.0 / (t[1] - t[0]))) if len(t) > 1 else 100
    n = len(t)
    tracks = {"blink": blinks(t, style["blink_rate"], rng)}
    brow = np.zeros(n)
    for a in accents:
        if rng.random() < BROW_PROB * style["brow_activity"]:
            brow = np.maximum(brow, rng.uniform(0.25, 0.7) * _bump(t, a - 0.12, 0.12, rng.uniform(0.1, 0.35), 0.25))
    mood = style["smile_bias"] + rng.normal(0, 0.08) + _smooth_noise(n, rate, MOOD_TAU, MOOD_SD, rng)
    tracks["brow_raise"] = brow + np.abs(_smooth_noise(n, rate, 1.5, 0.05, rng))
    tracks["smile"] = np.maximum(mood, 0.0)
    tracks["frown"] = 0.7 * np.maximum(-mood, 0.0)
    tracks["brow_frown"] = 0.5 * np.maximum(-mood, 0.0) + np.abs(_smooth_noise(n, rate, 1.0, 0.03, rng))
    tracks["squint"] = 0.3 * np.maximum(mood, 0.0) + np.abs(_smooth_noise(n, rate, 1.0, 0.03, rng))
    tracks["nose_wrinkle"] = np.abs(_smooth_noise(n, rate, 1.0, 0.02, rng))
    return tracks


def accent_times(phones, stressed: list[bool] | None = None) -> list[float]:
    """Centres of stressed vowels (espeak's stress marks), or else of the longest vowels."""
    vowels = [(s, e) for (s, e, lab) in phones if lab in VOWELS]
    if stressed is not None:
        return [0.5 * (s + e) for (s, e, lab), st in zip(phones, stressed) if st and lab in VOWELS]
    if not vowels:
        return []
    cut = np.percentile([e - s for s, e in vowels], 70)
    return [0.5 * (s + e) for s, e in vowels if e - s >= cut]
