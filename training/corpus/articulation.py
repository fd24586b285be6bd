"""Phones -> lip controls and jaw opening: how a face would say it.

Coarticulation follows Cohen & Massaro (1993): every phone has a target and a
dominance function alpha * exp(-theta * max(|t - centre| - hold, 0)); each channel
(lips, jaw) is the dominance-weighted mean of the targets. Rounded phones reach
further ahead (anticipatory rounding); alveolars and velars barely dominate the
lips, so the neighbouring vowels shape them (carry-over). Then the hard
constraints real lips obey are applied on top: bilabials close, f/v tuck,
long pauses relax to a closed neutral mouth.

Everything is sampled at RATE Hz and averaged into 25 fps frames, so short
phones still leave their mark in the frame that covers them.
"""

from __future__ import annotations

import numpy as np

from .phones import BILABIAL, LABIODENTAL, OPENNESS, SIL, VOWELS

RATE = 100
FPS = 25
SPEECH_CONTROLS = (
    "mouth_open",
    "lip_press",
    "pucker",
    "funnel",
    "spread",
    "lower_lip_tuck",
    "upper_lip_raise",
    "lower_lip_depress",
    "chin_raise",
)
OPENING = ("mouth_open", "lower_lip_depress", "upper_lip_raise", "funnel")
# Constraint strengths (calibrated against the stand-in head in tests/corpus).
JAW_CLOSED = 0.015  # rad: most jaw opening a bilabial closure allows
PRESS_PER_RAD = 40.0  # lip_press that seals the lips per rad of remaining jaw opening
CLOSURE_HALF = 0.024  # s: a closure holds at least this long either side of its centre
TUCK = 1.0  # lower_lip_tuck at f/v
LONG_PAUSE = 0.3  # s: pauses longer than this relax to neutral
JAW_MIN, JAW_RANGE = 0.02, 0.24  # rad: jaw for openness 0 .. 1
JAW_MAX = 0.4  # rad: no style opens wider than this (wide open is ~0.35)

# Lip targets per phone (controls not named are 0). Vowels add openness-driven opening.
LIP_TARGETS = {
    "IY": {"spread": 0.8},
    "IH": {"spread": 0.5},
    "EY": {"spread": 0.5},
    "EH": {"spread": 0.3},
    "AE": {"spread": 0.4, "upper_lip_raise": 0.2},
    "AA": {"lower_lip_depress": 0.25},
    "AO": {"funnel": 0.5},
    "AH": {},
    "ER": {"funnel": 0.4},
    "UH": {"pucker": 0.4, "funnel": 0.2},
    "UW": {"pucker": 0.9},
    "OW": {"funnel": 0.6, "pucker": 0.3},
    "P": {"lip_press": 0.5},
    "B": {"lip_press": 0.45},
    "M": {"lip_press": 0.45},
    "F": {"lower_lip_tuck": 1.0, "upper_lip_raise": 0.2},
    "V": {"lower_lip_tuck": 0.9, "upper_lip_raise": 0.15},
    "TH": {"mouth_open": 0.25},
    "DH": {"mouth_open": 0.2},
    "S": {"spread": 0.3},
    "Z": {"spread": 0.25},
    "SH": {"funnel": 0.8, "pucker": 0.2},
    "ZH": {"funnel": 0.8, "pucker": 0.2},
    "CH": {"funnel": 0.7, "pucker": 0.2},
    "JH": {"funnel": 0.7, "pucker": 0.2},
    "R": {"pucker": 0.4, "funnel": 0.3},
    "W": {"pucker": 1.0},
    "Y": {"spread": 0.4},
    "T": {},
    "D": {},
    "N": {},
    "L": {"mouth_open": 0.05},
    "K": {},
    "G": {},
    "NG": {},
    "HH": {},
    SIL: {},
}
CONSONANT_JAW = {
    "P": 0.02,
    "B": 0.02,
    "M": 0.02,
    "F": 0.04,
    "V": 0.04,
    "TH": 0.06,
    "DH": 0.06,
    "S": 0.02,
    "Z": 0.02,
    "SH": 0.04,
    "ZH": 0.04,
    "CH": 0.04,
    "JH": 0.04,
    "T": 0.05,
    "D": 0.05,
    "N": 0.05,
    "L": 0.06,
    "K": 0.07,
    "G": 0.07,
    "NG": 0.07,
    "HH": 0.1,
    "R": 0.06,
    "W": 0.04,
    "Y": 0.04,
    SIL: 0.0,
}
# (alpha lips, alpha jaw): how strongly a phone holds each channel.
DOMINANCE = {
    "P": (1.0, 0.6),
    "B": (1.0, 0.6),
    "M": (1.0, 0.6),
    "F": (1.0, 0.6),
    "V": (1.0, 0.6),
    "W": (1.0, 0.5),
    "SH": (0.9, 0.6),
    "ZH": (0.9, 0.6),
    "CH": (0.9, 0.6),
    "JH": (0.9, 0.6),
    "R": (0.7, 0.4),
    "Y": (0.5, 0.4),
    "TH": (0.4, 0.5),
    "DH": (0.4, 0.5),
    "S": (0.3, 0.8),
    "Z": (0.3, 0.8),
    "T": (0.15, 0.5),
    "D": (0.15, 0.5),
    "N": (0.15, 0.5),
    "L": (0.2, 0.5),
    "K": (0.1, 0.4),
    "G": (0.1, 0.4),
    "NG": (0.1, 0.4),
    "HH": (0.05, 0.2),
    SIL: (0.5, 0.5),
}
ROUNDED = {"W", "UW", "OW", "UH", "SH", "ZH", "CH", "JH", "R", "AO"}
DIPHTHONGS = {"AY": ("AA", "IY"), "AW": ("AA", "UW"), "OY": ("AO", "IY"), "EY": ("EH", "IY"), "OW": ("AO", "UW")}
THETA_BEFORE, THETA_AFTER, THETA_ROUND = 22.0, 30.0, 9.0  # 1/s
HOLD = 0.35  # share of a phone spent at target


def _segments(phones):
    """Split diphthongs into two targets; keep (start, end, label)."""
    out = []
    for s, e, lab in phones:
        if lab in DIPHTHONGS and e - s > 0.06:
            a, b = DIPHTHONGS[lab]
            m = s + 0.6 * (e - s)
            out += [(s, m, a), (m, e, b)]
        else:
            out.append((s, e, lab))
    return out


def _targets(lab: str, style: dict) -> tuple[np.ndarray, float]:
    gain = 1.0 + 0.25 * style["hyper"]
    lips = np.array([LIP_TARGETS.get(lab, {}).get(c, 0.0) for c in SPEECH_CONTROLS]) * gain
    if lab in VOWELS:
        o = OPENNESS.get(lab, 0.5)
        lips[SPEECH_CONTROLS.index("mouth_open")] += 0.45 * o * (1.0 - style["jaw_share"]) * gain
        jaw = (JAW_MIN + JAW_RANGE * o) * (style["jaw_share"] / 0.55) * gain
    else:
        jaw = CONSONANT_JAW.get(lab, 0.05)
    return lips, jaw


def _envelope(t, start, end, ramp):
    """1 inside [start, end], linear ramps of `ramp` s outside."""
    return np.clip(np.minimum(t - (start - ramp), (end + ramp) - t) / ramp, 0.0, 1.0)


def articulate(phones, duration: float, style: dict) -> tuple[dict, np.ndarray]:
    """Lip control tracks (name -> (N,)) and jaw opening (N,) at RATE Hz over `duration` s."""
    n = int(np.ceil(duration * RATE))
    t_audio = np.arange(n) / RATE
    t = t_audio + style.get("lead", 0.0)  # the face leads the sound
    segs = _segments(phones) or [(0.0, duration, SIL)]
    speed = style["speed"] * (1.0 + 0.25 * style["hyper"])
    num_l = np.zeros((n, len(SPEECH_CONTROLS)))
    num_j = np.zeros(n)
    den_l = np.full(n, 1e-6)
    den_j = np.full(n, 1e-6)
    for s, e, lab in segs:
        c, d = 0.5 * (s + e), e - s
        tau = np.maximum(np.abs(t - c) - HOLD * d, 0.0)
        before = t < c
        theta = np.where(before, THETA_ROUND if lab in ROUNDED else THETA_BEFORE, THETA_AFTER) * speed
        shape = np.exp(-theta * tau)
        a_l, a_j = DOMINANCE.get(lab, (0.8, 1.0))
        lips, jaw = _targets(lab, style)
        num_l += (a_l * shape)[:, None] * lips
        den_l += a_l * shape
        num_j += a_j * shape * jaw
        den_j += a_j * shape
    lips = num_l / den_l[:, None] * style["amplitude"]
    jaw = np.minimum(num_j / den_j * style["amplitude"], JAW_MAX)
    tracks = {name: lips[:, i] for i, name in enumerate(SPEECH_CONTROLS)}
    _constrain(tracks, jaw, t_audio, phones, duration)
    return tracks, jaw


def _constrain(tracks: dict, jaw: np.ndarray, t: np.ndarray, phones, duration: float) -> None:
    """The hard constraints, in place: closures, tucks, relaxed long pauses."""
    for s, e, lab in phones:
        d = e - s
        if lab in BILABIAL or lab in LABIODENTAL:
            c = 0.5 * (s + e)
            g = _envelope(t, min(s + 0.25 * d, c - CLOSURE_HALF), max(e - 0.25 * d, c + CLOSURE_HALF), 0.03)
            for name in OPENING:
                tracks[name] *= 1.0 - g
            if lab in BILABIAL:
                tracks["lower_lip_tuck"] *= 1.0 - g
                jaw[:] = jaw * (1.0 - g) + g * np.minimum(jaw, JAW_CLOSED)
                seal = np.clip(PRESS_PER_RAD * jaw, 0.0, 1.0)
                tracks["lip_press"] = tracks["lip_press"] * (1.0 - g) + g * seal
            else:
                tracks["lower_lip_tuck"] = np.maximum(tracks["lower_lip_tuck"], TUCK * g)
                jaw[:] = jaw * (1.0 - g) + g * np.minimum(jaw, 0.05)
        elif lab == SIL and (d > LONG_PAUSE or (d > 0.12 and (s <= 0.01 or e >= duration - 0.01))):
            g = _envelope(t, s + 0.1, e - 0.08, 0.06)
            for name in tracks:
                tracks[name] *= 1.0 - g
            jaw *= 1.0 - g


def to_frames(track: np.ndarray, n_frames: int) -> np.ndarray:
    """Average RATE Hz samples over each 25 fps frame: frame k covers [k/25, (k+1)/25)."""
    per = RATE // FPS
    x = track[: n_frames * per]
    if len(x) < n_frames * per:
        x = np.concatenate([x, np.repeat(x[-1:], n_frames * per - len(x), axis=0)])
    return x.reshape(n_frames, per, *track.shape[1:]).mean(axis=1)
