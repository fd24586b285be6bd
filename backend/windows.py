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
# Listen windows overlap by a second: M2S hears the frames near a window's edge with
# less context, and the cross-fade hides where one window's vocoded phase meets the next.
LISTEN_OVERLAP = FPS


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


class Stitch:
    """Pieces placed at `spans` cross-faded into one preallocated track, one piece at a time,
    so that only the track and the piece in hand are ever held.

    `power` 1 blends correlated pieces (motion: weights summing to one keep position and
    velocity); 2 blends uncorrelated ones (audio vocoded per window, whose phases differ):
    dividing by the root of the summed squared weights keeps the loudness constant across
    a seam instead of dipping by 3 dB in its middle.
    """

    def __init__(self, spans: list[tuple[int, int]], tail: tuple = (), power: int = 1):
        self.spans, self.power = spans, power
        self.out = np.zeros((spans[-1][1],) + tuple(tail), np.float32)
        self.weight = np.zeros(spans[-1][1], np.float32)

    def weights(self, i: int) -> np.ndarray:
        s, e = self.spans[i]
        w = np.ones(e - s, np.float32)
        if i > 0:  # fade in over the overlap with the previous window
            lead = self.spans[i - 1][1] - s
            w[:lead] = fade(lead)
        if i + 1 < len(self.spans):  # fade out over the overlap with the next window
            tail = e - self.spans[i + 1][0]
            w[e - s - tail :] = np.minimum(w[e - s - tail :], 1.0 - fade(tail))
        return w

    def add(self, i: int, piece: np.ndarray) -> None:
        s, e = self.spans[i]
        w = self.weights(i)
        self.out[s:e] += (w[:, None] if self.out.ndim > 1 else w) * piece[: e - s]
        self.weight[s:e] += w if self.power == 1 else w**self.power

    def result(self) -> np.ndarray:
        norm = self.weight if self.power == 1 else self.weight ** (1.0 / self.power)
        return self.out / (norm[:, None] if self.out.ndim > 1 else norm)


def blend(pieces: list[np.ndarray], spans: list[tuple[int, int]]) -> np.ndarray:
    """Cross-fade per-window arrays (T_i, D) placed at `spans` into one (N, D) track."""
    stitch = Stitch(spans, pieces[0].shape[1:])
    for i, piece in enumerate(pieces):
        stitch.add(i, piece)
    return stitch.result()


def listen(
    engine, exp: np.ndarray, jaw: np.ndarray, *, window: int | None = None, cancel=None, progress=None
) -> np.ndarray:
    """What M2S hears from a take of any length: 16 kHz float32 audio, peak-normalised.

    M2S attends over its whole input, so one pass over a long take costs memory with
    the square of its length; here every window of `window` frames (default
    LONG_WINDOW) is heard and vocoded alone and the windows' audio cross-faded with
    constant loudness (Stitch, power 2) over LISTEN_OVERLAP. Memory: one window's
    mel and audio plus the float32 track (64 kB per second). The cancel event is
    looked at before every window.
    """
    from backend.engine import Cancelled
    from backend.vocoder import peak_normalise

    n_frames = len(exp)
    length = max(2, min(int(window or LONG_WINDOW), int(engine.max_frames)))
    spans = plan(n_frames, length, min(LISTEN_OVERLAP, length // 4))
    stitch = Stitch([(s * SAMPLES_PER_FRAME, e * SAMPLES_PER_FRAME) for s, e in spans], power=2)
    for k, (s, e) in enumerate(spans):
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled while listening")
        stitch.add(k, engine.hear(exp[s:e], jaw[s:e]))
        if progress is not None:
            progress((k + 1) / len(spans))
    return peak_normalise(stitch.result())


def animate_spans(
    n_frames: int, max_frames: int, window: int | None = None, overlap: int | None = None
) -> list[tuple[int, int]]:
    """The passes `animate` makes over n_frames: one when it fits, else LONG_WINDOW windows."""
    if n_frames <= max_frames:
        return [(0, n_frames)]
    length = min(max_frames, window or LONG_WINDOW)
    return plan(n_frames, length, default_overlap(length) if overlap is None else overlap)


def animate(
    engine,
    audio: np.ndarray,
    *,
    window: int | None = None,
    overlap: int | None = None,
    progress=None,
    cancel=None,
    on_window=None,
    **options,
):
    """`engine.animate` for audio of any length (same arguments, same result type).

    A clip that fits one pass (`engine.max_frames`) runs in one pass; a longer one
    in windows of `window` frames (default LONG_WINDOW, at most max_frames).
    `progress(fraction)` gets the whole clip's fraction; `on_window(index, count)`
    is called as each window starts (once with (0, 1) for a single pass), so a
    caller can tell which window a fraction belongs to.
    """
    n_frames = len(audio) // SAMPLES_PER_FRAME  # the engine drops a trailing partial frame
    spans = animate_spans(n_frames, int(engine.max_frames), window, overlap)
    if len(spans) == 1:
        _starting(on_window, 0, 1)
        return engine.animate(audio, progress=progress, cancel=cancel, **options)
    results = []
    for k, (s, e) in enumerate(spans):
        _starting(on_window, k, len(spans))
        chunk = audio[s * SAMPLES_PER_FRAME : e * SAMPLES_PER_FRAME]
        results.append(engine.animate(chunk, progress=_sub_progress(progress, k, len(spans)), cancel=cancel, **options))
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
    lip_g = [r.lip_guidance for r in results]  # each window guides its own mean lips: frame-weighted
    lip_guidance = None if None in lip_g else float((np.array(lip_g) * lengths).sum() / lengths.sum())
    return replace(results[0], takes=takes, timings=timings, lip_guidance=lip_guidance)


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
