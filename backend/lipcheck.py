"""Geometric lip-sync checks that need no motion ground truth, only phone times.

They work on any recording whose phones are known (gold, forced-aligned or
recognised) and on any face whose lip gap per frame can be measured: the
stand-in head, or an artist's character measured on its own lip vertices.

- closure: the share of m/p/b phones inside which the lip gap reaches
  `CLOSED_MM` or less in some frame (the phone's frames, widened by one frame
  either side, since a closure can straddle a frame boundary at 25 fps);
- vowel gap: the median lip gap over the frames of vowel phones.
"""

from __future__ import annotations

import numpy as np

from .contracts import FPS

CLOSED_MM = 2.0
SLACK_FRAMES = 1
BILABIAL = ("P", "B", "M")
VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")


def _span(start: float, end: float, n: int, fps: float, slack: int) -> slice:
    a = int(np.floor(start * fps)) - slack
    b = int(np.ceil(end * fps)) + slack
    return slice(max(a, 0), min(max(b, a + 1), n))


def _label(lab) -> str:
    """A phone label as the checks compare it: upper case, stress digits dropped."""
    return str(lab).upper().rstrip("012")


def phone_spans(phones, labels, n: int, fps: float = FPS, slack: int = 0) -> list[slice]:
    """Frame slices of the phones whose label (stress digits dropped, upper case) is in `labels`."""
    out = []
    for start, end, lab in phones:
        if _label(lab) in labels:
            span = _span(float(start), float(end), n, fps, slack)
            if span.stop > span.start:
                out.append(span)
    return out


def bilabial_min_gaps(gap_mm: np.ndarray, phones, fps: float = FPS) -> np.ndarray:
    """The smallest lip gap inside each m/p/b phone (its frames widened by SLACK_FRAMES): how near
    to closing the lips come, where `closure` only says whether they reach CLOSED_MM."""
    gap_mm = np.asarray(gap_mm, dtype=np.float64)
    spans = phone_spans(phones, BILABIAL, len(gap_mm), fps, SLACK_FRAMES)
    return np.array([float(gap_mm[s].min()) for s in spans])


def closure_of(mins: np.ndarray, closed_mm: float = CLOSED_MM) -> tuple[float, int]:
    """(share of the m/p/b phones whose smallest gap `mins` reaches closed_mm, number of phones)."""
    if not len(mins):
        return float("nan"), 0
    return float(np.mean(np.asarray(mins) <= closed_mm)), len(mins)


def closure(gap_mm: np.ndarray, phones, fps: float = FPS, closed_mm: float = CLOSED_MM) -> tuple[float, int]:
    """(share of m/p/b phones whose lips close to <= closed_mm in some frame, number of such phones)."""
    return closure_of(bilabial_min_gaps(gap_mm, phones, fps), closed_mm)


def vowel_frames(gap_mm: np.ndarray, phones, fps: float = FPS) -> np.ndarray:
    """The lip gap on every frame that lies inside a vowel phone."""
    gap_mm = np.asarray(gap_mm, dtype=np.float64)
    spans = phone_spans(phones, VOWELS, len(gap_mm), fps, 0)
    return np.concatenate([gap_mm[s] for s in spans]) if spans else np.zeros(0)


# where on the timeline a lip error falls (training's evaluate splits LVE by these)
FRAME_CLASSES = ("vowel", "mbp", "consonant", "pause")


def frame_classes(phones, n: int, fps: float = FPS) -> np.ndarray:
    """Each frame's index into FRAME_CLASSES by the phone its centre lies in: a vowel, an m/p/b,
    another phone, or none (silence, or a time no phone covers). Centres, not the checks' widened
    spans, so every frame counts once."""
    centres = (np.arange(n) + 0.5) / fps
    cls = np.full(n, FRAME_CLASSES.index("pause"))
    for start, end, lab in phones:
        label = _label(lab)
        if label == "SIL":
            continue
        kind = "vowel" if label in VOWELS else "mbp" if label in BILABIAL else "consonant"
        cls[(centres >= float(start)) & (centres < float(end))] = FRAME_CLASSES.index(kind)
    return cls


def summarise(gaps_mm: list[np.ndarray], phones_per_clip: list) -> dict:
    """Closure share and median vowel gap over clips (one gap curve and one phone list per clip)."""
    hits, total, vowels = 0.0, 0, []
    for gap, phones in zip(gaps_mm, phones_per_clip):
        share, n = closure(gap, phones)
        if n:
            hits += share * n
            total += n
        vowels.append(vowel_frames(gap, phones))
    v = np.concatenate(vowels) if vowels else np.zeros(0)
    return {
        "closure": hits / total if total else None,
        "bilabials": total,
        "vowel_gap_mm": float(np.median(v)) if len(v) else None,
        "vowel_frames": int(len(v)),
    }
