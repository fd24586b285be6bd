"""What one request does, shared by the HTTP service and the `thunder` CLI.

`animate` decodes audio, runs the engine (windowed for long clips) and returns
the takes as numpy arrays; `to_payload` turns that into the JSON the protocol
documents (docs/protocol.md); `parse_take` / `listen` serve `/v1/listen`.
`ProgressTracker` turns the engine's fractions into the window / step / time-left
records the streaming `/v1/animate` sends.
One code path, so `thunder animate` and `POST /v1/animate` cannot disagree.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from backend import audio as audio_io
from backend import windows
from backend.contracts import (  # noqa: F401  (the limits are re-exported: routes read them from jobs)
    FPS,
    MAX_ABS_EXP,
    MAX_ABS_JAW,
    MAX_GUIDANCE,
    MAX_SEED,
    MAX_STEPS,
    MAX_TAKES,
    N_EXP,
    N_JAW,
    PRESET_NAMES,
    SAMPLE_RATE,
    OptionError,
    check_request,
)
from backend.engine import PROGRESS_ENCODED, PROGRESS_SAMPLED, Cancelled
from backend.liplock import mean_lips_draws, mean_lips_guidance
from backend.samplers import SAMPLERS, SamplerError, timesteps

ENCODINGS = ("json", "b64")


@dataclass(frozen=True)
class AnimateOptions:
    takes: int = 4
    seed: int = 0
    preset: str = "default"
    sampler: str | None = None
    steps: int | None = None
    guidance: float = 1.0
    start: float | None = None
    end: float | None = None
    rank: bool = False
    encoding: str = "json"

    def check(self) -> "AnimateOptions":
        """Range checks (the HTTP layer checks these too; the CLI relies on this)."""
        check_request(self.takes, self.seed, self.steps, self.guidance)
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise OptionError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.encoding not in ENCODINGS:
            raise OptionError(f"encoding must be one of {', '.join(ENCODINGS)}, got {self.encoding!r}")
        return self


@dataclass
class AnimateOutput:
    """Takes as arrays plus what the response reports about them."""

    takes: list  # engine Take objects (seed, exp, jaw, score)
    sampler: str
    steps: int
    guidance: float
    duration: float
    timings: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(len(self.takes[0].exp)) if self.takes else 0


def resolve_preset(engine, opts: AnimateOptions) -> tuple[str, int]:
    """Sampler and step count: the preset's, overridden by explicit options."""
    presets = getattr(engine, "presets", {}) or {}
    if opts.preset not in presets:
        raise OptionError(f"preset {opts.preset!r} is not in this bundle (has: {', '.join(sorted(presets))})")
    preset = presets[opts.preset]
    sampler = opts.sampler or preset["sampler"]
    steps = int(opts.steps if opts.steps is not None else preset["steps"])
    return sampler, steps


def decode(source, opts: AnimateOptions, max_seconds: float | None = None) -> tuple[np.ndarray, float]:
    """The request's audio, cropped, as mono float32 16 kHz, and the seconds decoding took."""
    t0 = time.perf_counter()
    audio, _info = audio_io.decode(source, start=opts.start, end=opts.end, max_seconds=max_seconds)
    return audio, time.perf_counter() - t0


def animate_audio(
    engine,
    audio: np.ndarray,
    opts: AnimateOptions,
    *,
    progress=None,
    cancel=None,
    timings: dict | None = None,
    tracker: "ProgressTracker | None" = None,
) -> AnimateOutput:
    """Decoded audio → ranked takes (windowed when longer than one engine pass).

    `progress(fraction)` gets the whole job's fraction (the CLI's bar); `tracker`,
    when given, also follows windows and sampler steps (the streaming HTTP answer).
    """
    opts.check()
    sampler, steps = resolve_preset(engine, opts)
    t0 = time.perf_counter()
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled before sampling")
    if tracker is not None:
        tracker.begin(walked_steps(engine, sampler, steps))
    report, on_window = _progress_hooks(progress, tracker)
    try:
        result = windows.animate(
            engine,
            audio,
            takes=opts.takes,
            seed=opts.seed,
            preset=opts.preset,
            sampler=sampler,
            steps=steps,
            guidance=opts.guidance,
            progress=report,
            on_window=on_window,
            cancel=cancel,
        )
    except SamplerError as exc:
        raise OptionError(str(exc)) from None
    if tracker is not None:
        tracker.finish()
    takes = list(result.takes)
    if opts.rank:
        takes.sort(key=lambda t: -float(t.score))
    timings = {**(timings or {}), **{k: float(v) for k, v in result.timings.items()}}
    timings["total"] = timings.get("decode", 0.0) + time.perf_counter() - t0
    return AnimateOutput(takes, sampler, steps, opts.guidance, len(audio) / SAMPLE_RATE, timings)


def cost(engine, n_frames: int, opts: AnimateOptions) -> int:
    """What a request asks of the denoiser, in frame-passes: the frames it samples (window
    overlaps included) × takes × steps walked (ddpm: the whole schedule) × 2 with guidance
    (each step runs the null-audio twin too), + 1 step for guided mean lips. Checked against
    `--max-cost` before queueing."""
    sampler, steps = resolve_preset(engine, opts)
    frames = sum(e - s for s, e in windows.animate_spans(n_frames, int(engine.max_frames)))
    if getattr(engine, "deterministic", False):  # one denoiser pass, whatever the sampler
        return frames * opts.takes
    walked = max(1, walked_steps(engine, sampler, steps))
    return frames * (opts.takes * walked * (2 if opts.guidance != 1.0 else 1) + mean_lips_rows(engine, opts))


def mean_lips_rows(engine, opts: AnimateOptions) -> int:
    """Denoiser rows per frame that the preset's mean lips add to the first step (backend/liplock.py):
    with `lip_draws` K, K rows (2 K when guided); otherwise each take's null-audio row when the
    lips are guided and the request is not, else 0."""
    preset = (getattr(engine, "presets", {}) or {}).get(opts.preset)
    lip_g = mean_lips_guidance(preset)
    if lip_g is None or not getattr(engine, "shares_lips", False):
        return 0
    draws = mean_lips_draws(preset)
    if draws is not None:
        return draws * (2 if lip_g != 1.0 else 1)
    return opts.takes * int(lip_g != 1.0 and opts.guidance == 1.0)


def check_cost(engine, n_frames: int, opts: AnimateOptions, budget: float | None) -> int:
    """The request's cost; CostError (413 `too_costly`) when over a positive budget."""
    spent = cost(engine, n_frames, opts)
    if budget and spent > budget:
        sampler, _ = resolve_preset(engine, opts)
        why = " × 2 for guidance" if opts.guidance != 1.0 else ""
        hint = f" (ddpm walks all {walked_steps(engine, sampler, 1)} steps)" if sampler == "ddpm" else ""
        raise CostError(
            f"this request needs {spent:,} denoiser frame-passes (frames × takes × steps walked{why}); "
            f"this server allows {int(budget):,}: ask for fewer takes or steps, a shorter clip, "
            f"or another sampler{hint}"
        )
    return spent


class CostError(OptionError):
    """A request over the server's work budget (HTTP 413 `too_costly`)."""

    code = "too_costly"
    status = 413


def walked_steps(engine, sampler: str, steps: int) -> int:
    """Denoiser passes per window: ddpm walks the whole schedule, the others at most `steps`
    distinct steps (fewer when the schedule is too short to space them apart)."""
    try:
        if sampler == "ddpm":
            return int(engine.schedule.steps)
        return len(timesteps(engine.schedule, steps))
    except (AttributeError, SamplerError):  # an engine without a schedule: no step count to show
        return 0


def _progress_hooks(progress, tracker):
    """windows.animate's `progress` and `on_window` hooks feeding a fraction callback and/or a tracker."""
    if tracker is None:
        return progress, None

    def report(fraction: float) -> None:
        tracker.update(fraction)
        if progress is not None:
            progress(fraction)

    return report, tracker.window


@dataclass(frozen=True)
class Progress:
    """Where a job stands: one `progress` event of the streaming /v1/animate (docs/protocol.md)."""

    fraction: float = 0.0  # of the whole job, never decreasing
    stage: str = "queued"  # queued | encoding | sampling | scoring | done
    window: int = 0  # 1-based; 0 while queued
    windows: int = 0
    step: int = 0  # sampler steps done in this window
    steps: int = 0  # sampler steps per window
    elapsed_s: float = 0.0  # since the worker started the job (queue wait excluded)
    eta_s: float | None = None  # None until a sampler step has been timed

    def as_dict(self) -> dict:
        return {
            "fraction": round(self.fraction, 4),
            "stage": self.stage,
            "window": self.window,
            "windows": self.windows,
            "step": self.step,
            "steps": self.steps,
            "elapsed_s": round(self.elapsed_s, 2),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
        }


class ProgressTracker:
    """Engine fractions → `Progress` snapshots: written by the worker thread, read from any thread.

    The worker swaps in a new immutable snapshot under a lock and readers take the
    latest one (the HTTP stream polls every 0.1 s), so a fast sampler cannot flood
    a slow reader and nothing piles up in between.
    """

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._now = Progress()
        self._t0 = 0.0
        self._steps = 0
        self._window = (0, 1)  # (index, count) of the window running
        self._origin = None  # (time, fraction) when sampling first began: the rate's start

    def snapshot(self) -> Progress:
        with self._lock:
            return self._now

    def begin(self, steps: int) -> None:
        """The worker took the job up: start the clock."""
        self._t0, self._steps = self._clock(), steps

    def window(self, index: int, count: int) -> None:
        """windows.animate's `on_window`: window `index` of `count` starts."""
        self._window = (index, count)
        self._publish(index / count, 0.0)

    def update(self, fraction: float) -> None:
        """windows.animate's `progress`: the whole clip's fraction."""
        index, count = self._window
        self._publish(fraction, fraction * count - index)

    def finish(self) -> None:
        """The takes are ready: 1.0 and `done`, whatever the engine reported last."""
        self._window = (self._window[1] - 1, self._window[1])
        self._publish(1.0, 1.0)

    def _publish(self, fraction: float, local: float) -> None:
        """`local`: the running window's own fraction, in the engine's mapping (backend/engine.py)."""
        index, count = self._window
        local = min(1.0, max(0.0, local))
        sampled = (local - PROGRESS_ENCODED) / (PROGRESS_SAMPLED - PROGRESS_ENCODED)
        step = round(min(1.0, max(0.0, sampled)) * self._steps)
        now = self._clock()
        with self._lock:
            fraction = min(1.0, max(fraction, self._now.fraction))
            stage = _stage(fraction, local, step, self._steps)
            if self._origin is None and stage == "sampling":
                self._origin = (now, fraction)
            self._now = Progress(
                fraction, stage, index + 1, count, step, self._steps, now - self._t0, self._eta(now, fraction)
            )

    def _eta(self, now: float, fraction: float) -> float | None:
        """Seconds left at the rate since sampling began. Measuring from there, not from the
        start, keeps the first window's quick encode (5 % of its fraction) from making the
        first estimates far too short."""
        if fraction >= 1.0:
            return 0.0
        if self._origin is None or fraction <= self._origin[1]:
            return None
        t0, f0 = self._origin
        return (now - t0) * (1.0 - fraction) / (fraction - f0)


def _stage(fraction: float, local: float, step: int, steps: int) -> str:
    if fraction >= 1.0:
        return "done"
    if local < PROGRESS_ENCODED:
        return "encoding"
    # The last step's report means the takes are being scored now (rounding keeps this exact
    # where `local` itself, rebuilt from the whole clip's fraction, is off by an ulp).
    return "scoring" if steps and step >= steps else "sampling"


def animate(
    engine, source, opts: AnimateOptions, *, max_seconds: float | None = None, progress=None, cancel=None
) -> AnimateOutput:
    """Decode `source` (bytes, path or file object) and animate it; raises AudioError/OptionError."""
    opts.check()
    resolve_preset(engine, opts)  # a bad preset fails before a long decode
    audio, t_decode = decode(source, opts, max_seconds)
    return animate_audio(engine, audio, opts, progress=progress, cancel=cancel, timings={"decode": t_decode})


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def _take_item(t, encoding: str) -> dict:
    item = {"seed": int(t.seed), "score": float(t.score)}
    if encoding == "b64":
        item["exp_b64"], item["jaw_b64"] = _b64(t.exp), _b64(t.jaw)
    else:
        item["exp"] = np.asarray(t.exp, np.float32).round(6).tolist()
        item["jaw"] = np.asarray(t.jaw, np.float32).round(6).tolist()
    return item


def to_payload(out: AnimateOutput, encoding: str = "json", takes: bool = True) -> dict:
    """The /v1/animate response body (docs/protocol.md); `takes=False` leaves them out (null)."""
    return {
        "fps": FPS,
        "n_frames": out.n_frames,
        "duration": round(out.duration, 6),
        "sample_rate": SAMPLE_RATE,
        "sampler": out.sampler,
        "steps": out.steps,
        "guidance": out.guidance,
        "encoding": encoding,
        "takes": [_take_item(t, encoding) for t in out.takes] if takes else None,
        "timings": {k: round(v, 6) for k, v in out.timings.items()},
    }


def to_json(out: AnimateOutput, encoding: str = "json") -> bytes:
    """`to_payload` as compact strict JSON bytes, the same bytes as json.dumps of it, built one
    take at a time: 32 takes of 10 minutes as Python lists would take gigabytes at once."""

    def dumps(value) -> bytes:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()

    head = dumps(to_payload(out, encoding, takes=False))
    before, after = head.split(b'"takes":null', 1)
    parts = [before, b'"takes":[']
    for i, t in enumerate(out.takes):
        parts += [b"," if i else b"", dumps(_take_item(t, encoding))]
    return b"".join(parts + [b"]", after])


def to_npz_dict(out: AnimateOutput) -> dict:
    """Arrays for `thunder animate --out X.npz`: exp (K,T,50), jaw (K,T,3), seeds, scores."""
    return {
        "exp": np.stack([t.exp for t in out.takes]).astype(np.float32),
        "jaw": np.stack([t.jaw for t in out.takes]).astype(np.float32),
        "seeds": np.array([t.seed for t in out.takes], np.int64),
        "scores": np.array([t.score for t in out.takes], np.float32),
        "fps": np.int64(FPS),
        "sampler": np.str_(out.sampler),
        "steps": np.int64(out.steps),
        "guidance": np.float32(out.guidance),
    }


LIMITS = {"exp": (N_EXP, MAX_ABS_EXP), "jaw": (N_JAW, MAX_ABS_JAW)}


def _array(payload: dict, name: str, max_frames: int) -> np.ndarray:
    """One of a take's arrays, given as a list of rows or as base64, checked and as float32."""
    width, limit = LIMITS[name]
    listed, encoded = payload.get(name), payload.get(f"{name}_b64")
    if listed is not None and encoded is not None:
        raise OptionError(f"give {name} or {name}_b64, not both")
    if listed is not None:
        if not isinstance(listed, (list, tuple, np.ndarray)):
            raise OptionError(f"{name} must be a list of {width}-float rows")
        try:
            a = np.asarray(listed, dtype=np.float64)
        except (TypeError, ValueError):
            raise OptionError(f"{name} must be a list of {width}-float rows") from None
    elif encoded is not None:
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (ValueError, TypeError):
            raise OptionError(f"{name}_b64 is not valid base64") from None
        if len(raw) % (4 * width):
            raise OptionError(f"{name}_b64 holds {len(raw)} bytes: not a whole number of {width}-float32 rows")
        a = np.frombuffer(raw, "<f4").reshape(-1, width)
    else:
        raise OptionError(f"{name} (or {name}_b64) is required")
    if a.ndim != 2 or a.shape[1] != width or len(a) == 0:
        raise OptionError(f"{name} must have shape [n_frames >= 1, {width}], got {list(a.shape)}")
    if len(a) > max_frames:
        raise OptionError(f"{name} has {len(a)} frames; the limit is {max_frames}")
    n = payload.get("n_frames")
    if n is not None and n != len(a):
        raise OptionError(f"n_frames is {n} but {name} holds {len(a)} frames")
    # Checked after the float32 cast: 1e300 is finite as a float64 and inf as the model sees it.
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise OptionError(f"{name} holds NaN or infinite values")
    if np.abs(a).max() > limit:
        raise OptionError(f"{name} values must be within ±{limit:g}, got {float(np.abs(a).max()):g}")
    return a


def parse_take(payload: dict, max_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """exp (T, 50) and jaw (T, 3) from a /v1/listen body (lists or base64)."""
    exp = _array(payload, "exp", max_frames)
    jaw = _array(payload, "jaw", max_frames)
    if len(exp) != len(jaw):
        raise OptionError(f"exp has {len(exp)} frames but jaw has {len(jaw)}")
    return exp, jaw


def listen(engine, exp: np.ndarray, jaw: np.ndarray, cancel=None) -> bytes:
    """A take → M2S mel → Griffin-Lim (window by window) → 16 kHz WAV bytes."""
    audio = engine.listen(exp, jaw, cancel=cancel)
    if not np.isfinite(audio).all():  # a model bug: never answer it as a WAV of full-scale noise
        raise RuntimeError("M2S produced non-finite audio from a finite take")
    return audio_io.encode_wav(audio, SAMPLE_RATE)
