"""Long audio through overlapping windows whose seams do not show.

`Engine.animate` handles at most `engine.max_frames` frames per pass. Longer
clips are cut into windows of LONG_WINDOW frames overlapping by `overlap` frames
(spread evenly, so every overlap is at least `overlap`), each window animated
with the same seeds, and neighbouring windows cross-faded over their whole
overlap with a raised-cosine weight. The weight and its first derivative are
continuous (0 → 1 with zero slope at both ends), so the blended motion keeps
the position *and* velocity of each window where the fade begins and ends; the
only extra motion inside the fade is w'·(b − a), at most π/(2L)·|b − a| per
frame, which a long overlap keeps below the motion's own frame-to-frame speed.
Memory: one window of audio features at a time plus the (small) output.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from backend.contracts import FPS, SAMPLE_RATE

SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
# Window length for clips longer than one pass. Self-attention makes a pass cost
# a·W + b·W²; with a 2 s overlap the cost per frame is lowest near W = 10 s on the
# real-size denoiser (bench: 0.65 s per step for 8 × 250 frames, 3.5 s for
# 8 × 750). Shorter windows also stay nearer the 2.8 s sequences the denoiser
# trains on (ALiBi extrapolates beyond them).
LONG_WINDOW = 10 * FPS


def default_overlap(max_frames: int) -> int:
    """Two seconds, or a quarter of a window when windows are short."""
    return max(2, min(2 * FPS, max_frames // 4))


def plan(n_frames: int, max_frames: int, overlap: int) -> list[tuple[int, int]]:
    """Window [start, end) frame ranges covering n_frames; one window when it fits."""
    if max_frames < 2:
        raise ValueError(f"max_frames must be >= 2, got {max_frames}")
    if n_frames <= max_frames:
        return [(0, n_frames)]
    overlap = min(max(overlap, 1), max_frames - 1)
    count = math.ceil((n_frames - overlap) / (max_frames - overlap))
    starts = np.round(np.linspace(0, n_frames - max_frames, count)).astype(int)
    return [(int(s), int(s) + max_frames) for s in starts]


def fade(length: int) -> np.ndarray:
    """Raised-cosine ramp 0 → 1 sampled at frame centres: C1 at both ends."""
    t = (np.arange(length) + 0.5) / length
    return (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)


def blend(pieces: list[np.ndarray], spans: list[tuple[int, int]]) -> np.ndarray:
    """Cross-fade per-window arrays (T_i, D) placed at `spans` into one (N, D) track."""
    n = spans[-1][1]
    out = np.zeros((n,) + pieces[0].shape[1:], np.float32)
    weight = np.zeros(n, np.float32)
    for i, (piece, (s, e)) in enumerate(zip(pieces, spans)):
        w = np.ones(e - s, np.float32)
        if i > 0:                                   # fade in over the overlap with the previous window
            lead = spans[i - 1][1] - s
            w[:lead] = fade(lead)
        if i + 1 < len(spans):                      # fade out over the overlap with the next window
            tail = e - spans[i + 1][0]
            w[e - s - tail:] = np.minimum(w[e - s - tail:], 1.0 - fade(tail))
        out[s:e] += w[:, None] * piece[: e - s]
        weight[s:e] += w
    return out / weight[:, None]


def animate(engine, audio: np.ndarray, *, window: int | None = None, overlap: int | None = None,
            progress=None, cancel=None, on_window=None, **options):
    """`engine.animate` for audio of any length (same arguments, same result type).

    A clip that fits one pass (`engine.max_frames`) runs in one pass; a longer one
    in windows of `window` frames (default LONG_WINDOW, at most max_frames).
    `progress(fraction)` gets the whole clip's fraction; `on_window(index, count)`
    is called as each window starts (once with (0, 1) for a single pass), so a
    caller can tell which window a fraction belongs to.
    """
    n_frames = len(audio) // SAMPLES_PER_FRAME          # the engine drops a trailing partial frame
    max_frames = int(engine.max_frames)
    if n_frames <= max_frames:
        _starting(on_window, 0, 1)
        return engine.animate(audio, progress=progress, cancel=cancel, **options)
    length = min(max_frames, window or LONG_WINDOW)
    spans = plan(n_frames, length, default_overlap(length) if overlap is None else overlap)
    results = []
    for k, (s, e) in enumerate(spans):
        _starting(on_window, k, len(spans))
        chunk = audio[s * SAMPLES_PER_FRAME: e * SAMPLES_PER_FRAME]
        results.append(engine.animate(chunk, progress=_sub_progress(progress, k, len(spans)),
                                      cancel=cancel, **options))
    return merge(results, spans)


def merge(results, spans: list[tuple[int, int]]):
    """One result from per-window results: blended tracks, frame-weighted scores, summed timings."""
    spans = [(s, s + min(e - s, len(r.takes[0].exp))) for r, (s, e) in zip(results, spans)]
    lengths = np.array([e - s for s, e in spans], np.float64)
    takes = []
    for i, take in enumerate(results[0].takes):
        exp = blend([r.takes[i].exp for r in results], spans)
        jaw = blend([r.takes[i].jaw for r in results], spans)
        scores = np.array([r.takes[i].score for r in results], np.float64)
        takes.append(replace(take, exp=exp, jaw=jaw, score=float((scores * lengths).sum() / lengths.sum())))
    timings: dict[str, float] = {}
    for r in results:
        for key, value in r.timings.items():
            timings[key] = timings.get(key, 0.0) + float(value)
    timings["windows"] = float(len(spans))
    return replace(results[0], takes=takes, timings=timings)


def _sub_progress(progress, index: int, count: int):
    """Map a window's progress fraction onto the whole clip's."""
    if progress is None:
        return None

    def report(fraction: float):
        progress((index + float(fraction)) / count)
    return report


def _starting(on_window, index: int, count: int) -> None:
    if on_window is not None:
        on_window(index, count)
