"""Speaker roster: synthetic espeak-ng speakers (accent x variant x pitch x rate),
MBROLA voices when installed, the real speaker; each with an articulation style.

A speaker is data (a dict), drawn deterministically from the build seed.
"""

from __future__ import annotations

import numpy as np

ACCENTS = ("en-us", "en-us-nyc", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
# Variants that sound like a person (the robots, whispers and croaks are left out).
MALE = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "klatt",
    "klatt2",
    "klatt4",
    "Alex",
    "Andy",
    "Gene",
    "Lee",
    "Michael",
    "Mike",
    "Reed",
    "Storm",
    "adam",
    "benjamin",
    "caleb",
    "david",
    "ed",
    "edward",
    "ian",
    "john",
    "max",
    "norbert",
    "paul",
    "rob",
    "robert",
    "travis",
    "victor",
)
FEMALE = (
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "klatt3",
    "Annie",
    "Andrea",
    "anika",
    "belinda",
    "linda",
    "shelby",
    "steph",
    "aunty",
)


def draw_style(rng: np.random.Generator) -> dict:
    """Per-speaker articulation style (see articulation.py for how each is used)."""
    return {
        "amplitude": float(np.exp(rng.normal(0.0, 0.15))),  # overall lip-movement size
        "hyper": float(rng.uniform(-1.0, 1.0)),  # hypo (-) .. hyper (+) articulation
        "jaw_share": float(rng.uniform(0.35, 0.75)),  # opening by jaw vs by lips
        "asymmetry": float(rng.normal(0.0, 0.08)),  # + = left side stronger
        "speed": float(np.exp(rng.normal(0.0, 0.12))),  # articulator speed (dominance width)
        "lead": float(rng.uniform(0.0, 0.04)),  # visual lead over audio, s
        "smile_bias": float(rng.normal(0.05, 0.1)),  # resting mood
        "blink_rate": float(rng.uniform(15 / 60, 26 / 60)),  # blinks per second (upperface.BLINK_RATE_PER_MIN)
        "brow_activity": float(rng.uniform(0.2, 1.0)),  # brow raises on accents
    }


def neutral_style() -> dict:
    """The centre of `draw_style`'s distributions: the average speaker's articulation."""
    return {
        "amplitude": 1.0,
        "hyper": 0.0,
        "jaw_share": 0.55,
        "asymmetry": 0.0,
        "speed": 1.0,
        "lead": 0.02,
        "smile_bias": 0.05,
        "blink_rate": 20.5 / 60,
        "brow_activity": 0.6,
    }


def espeak_speakers(n: int, rng: np.random.Generator) -> list[dict]:
    """`n` distinct espeak speakers (each accent x variant combination at most once)."""
    combos = [(a, v, "f" if v in FEMALE else "m") for a in ACCENTS for v in MALE + FEMALE]
    if n > len(combos):
        raise ValueError(f"at most {len(combos)} espeak speakers, asked for {n}")
    picks = rng.permutation(len(combos))[:n]
    out = []
    for i, k in enumerate(sorted(int(p) for p in picks)):
        accent, variant, sex = combos[k]
        base = 62 if sex == "f" else 38
        out.append(
            {
                "id": f"es{i:03d}-{accent}-{variant}",
                "source": "espeak",
                "voice": f"{accent}+{variant}",
                "pitch": int(np.clip(rng.normal(base, 8), 10, 95)),
                "pitch_range": int(rng.uniform(30, 80)),
                "rate": int(rng.uniform(140, 200)),
                "style": draw_style(rng),
            }
        )
    return out
