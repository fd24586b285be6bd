"""Engine: speech -> takes of FLAME expression + jaw, scores, and listening.

One request: audio -> audio encoder (once) -> denoiser context (once: the audio
side of every cross-attention layer) -> sampler over the denoiser step graph
with all takes (and, for guidance, their null-audio twins) in one batch ->
de-normalise -> M2S lip-sync score per take (once for takes that share their lips:
Engine.one_mouth). Take i uses seed + i and depends on nothing else, so a take can be
redrawn alone.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from backend import features as feat
from backend.bundle import BundleError, load_bundle
from backend.contracts import DEFAULT_PRESETS, FPS, N_EXP, N_PARAMS, SAMPLE_RATE, FeatureConfig, check_request
from backend.samplers import Schedule, SamplerError, check_sampler, guided, sample, take_noise
from backend.headfile import load_head_file
from backend.lipcontact import LipPair, keep_apart, keeps_lips_apart
from backend.liplock import (
    articulate,
    guide_lips,
    lip_directions,
    lip_draw_noise,
    mean_lips_along,
    mean_lips_draws,
    mean_lips_guidance,
    mean_lips_opening_std,
    opening_direction,
    replace_lips,
    share_lip_noise,
)

SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
MIN_ENCODER_FRAMES = 2  # the audio encoder graph takes whole frames, at least two
# What Engine.animate reports per pass: PROGRESS_ENCODED once the audio is encoded,
# PROGRESS_ENCODED + (PROGRESS_SAMPLED - PROGRESS_ENCODED)·i/n after sampler step i of n, and 1.0
# once the takes are scored. backend/jobs.ProgressTracker inverts it to name stage and step.
PROGRESS_ENCODED, PROGRESS_SAMPLED = 0.05, 0.90
SCORE_BATCH = 8  # takes per M2S scoring pass (memory: see Engine._scores)


class Cancelled(Exception):
    """The caller's cancel event was set; no result."""


@dataclass
class Take:
    seed: int
    exp: np.ndarray  # (T, 50) float32
    jaw: np.ndarray  # (T, 3) float32, axis-angle radians
    score: float


@dataclass
class AnimateResult:
    takes: list[Take]
    timings: dict = field(default_factory=dict)
    fps: int = FPS
    # the guidance the takes' mean lips got (a preset's lip_guidance, or less with lip_opening_std_mm);
    # None where every take samples its own lips
    lip_guidance: float | None = None


def check_audio(audio) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono 1-D samples, got shape {audio.shape}")
    if audio.size < SAMPLES_PER_FRAME:
        raise ValueError(
            f"audio is {audio.size} samples long: at least one frame "
            f"({SAMPLES_PER_FRAME} samples at {SAMPLE_RATE} Hz) is needed"
        )
    audio = audio.astype(np.float32, copy=False)
    if not np.isfinite(audio).all():
        raise ValueError("audio holds NaN or infinite samples")
    return audio


def fit_frames(x: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Crop or edge-pad `x` to n entries along `axis` (encoders may differ by a frame)."""
    have = x.shape[axis]
    if have >= n:
        return np.take(x, np.arange(n), axis=axis)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, n - have)
    return np.pad(x, pad, mode="edge")


class Engine:
    """`share_lips`: every take starts from the same lip noise (backend/liplock.py), so takes
    agree on the lips and differ in the upper face; False gives fully independent takes.
    `lanes`: how many single-thread sessions split a sampler step's rows (backend/lanes.py;
    None: 2 on a CPU with two or more threads, 0 or 1: one session)."""

    def __init__(
        self,
        bundle_dir,
        device: str = "auto",
        threads: int | None = None,
        share_lips: bool = True,
        lanes: int | None = None,
    ):
        self.bundle = load_bundle(bundle_dir, device, threads, lanes=lanes)
        m = self.bundle.manifest
        self.manifest: dict = m
        self.head_path: Path = self.bundle.head_path
        self.device: str = self.bundle.device
        self.presets: dict = m.get("presets") or DEFAULT_PRESETS
        for name, preset in self.presets.items():  # a bad preset fails the bundle, not a request later
            try:
                mean_lips_draws(preset)
                mean_lips_along(preset)
                mean_lips_opening_std(preset)
            except ValueError as e:
                raise BundleError(f"preset {name!r} of {bundle_dir}: {e}") from None
        self.max_frames: int = int(m.get("max_frames", 30 * FPS))
        self.schedule = Schedule.from_dict(m["schedule"])
        self.features = FeatureConfig.from_dict(m.get("features", {}))
        st = self.bundle.stats
        self._mean = st["mean"].astype(np.float32)
        self._chol_t = st["chol"].astype(np.float32).T
        self._speaker_default = st.get("speaker_mean")
        self._deterministic = bool(m["graphs"]["denoiser"].get("config", {}).get("deterministic", False))
        self.deterministic = self._deterministic  # one denoiser pass per take, whatever the sampler
        head = load_head_file(self.head_path)
        self._lip_dirs = lip_directions(head, self._mean, self._chol_t.T, N_EXP)
        self._share_lips = share_lips and not self._deterministic
        self._lip_pair = LipPair(head, N_EXP)  # lips meet, they do not pass (lipcontact)
        self._opening = opening_direction(self._lip_pair, self._mean, self._chol_t.T, self._lip_dirs)
        self._lock = threading.Lock()

    @property
    def shares_lips(self) -> bool:
        """Whether takes share their lip noise (and so can take mean lips): share_lips and a sampler."""
        return self._share_lips

    def one_mouth(self, preset: str) -> bool:
        """Whether every take of `preset` has the same lips: mean lips from lip draws (liplock), the
        same estimate for every take. M2S then scores the lips once, on the first take, and every
        take carries that score: 8 takes x 10 s cost one M2S pass instead of eight (scoring 0.6-0.8 ->
        0.2 s on these 2 cores). The eight scores it replaces differ only by what the upper face
        moves around the mouth (median spread 0.005 synthetic, 0.020 real English, against 0.05
        between independent takes), and ranking by them picked takes 0.001 mm better in LVE than
        the average take (10 test clips a source x 8 takes; training/denoiser/README.md,
        "Sampler fidelity of what ships; lips scored once")."""
        p = self.presets[preset]
        return self.shares_lips and mean_lips_guidance(p) is not None and mean_lips_draws(p) is not None

    # ----------------------------------------------------------------- audio side
    def encode(self, audio: np.ndarray, n_frames: int) -> np.ndarray:
        """Audio-encoder features (n_frames, A) at 25 Hz."""
        frames = max(MIN_ENCODER_FRAMES, -(-audio.size // SAMPLES_PER_FRAME))
        padded = np.pad(audio, (0, frames * SAMPLES_PER_FRAME - audio.size))
        name = self.bundle.input_names("audio_encoder")[0]
        if name in ("mel", "log_mel"):
            x = feat.log_mel(padded, self.features)[None]
        else:
            x = padded[None]
        out = self.bundle.run("audio_encoder", {name: x})[0][0]
        return fit_frames(out.astype(np.float32), n_frames, 0)

    def speaker(self, audio: np.ndarray) -> np.ndarray | None:
        """Speaker embedding (256,) of the input speech, when the bundle has the speaker graph."""
        if "speaker" not in self.bundle.sessions:
            return None
        from backend.speaker import combine_partials, speaker_mels

        try:
            mels = speaker_mels(audio)
        except ValueError:  # all silence: fall back to the bundle's mean speaker
            return self._speaker_default
        name = self.bundle.input_names("speaker")[0]
        return combine_partials(self.bundle.run("speaker", {name: mels})[0])

    # ----------------------------------------------------------------- sampling
    def _context(self, feats: np.ndarray, use_null: bool) -> np.ndarray:
        """Context (L, 2, 1 or 2, T, d): the audio row, plus the null-audio row for guidance."""
        rows = 2 if use_null else 1
        audio = np.repeat(feats[None], rows, axis=0)
        null = np.arange(rows, dtype=np.float32)
        return self.bundle.run("denoiser_context", {"audio": audio, "null": null})[0]

    def _sample(self, feats, seeds, sampler, steps, guidance, progress, cancel, lips: dict | None = None) -> np.ndarray:
        """`lips` (a preset's): {"lips": "mean", "lip_guidance": g} keeps the sampled upper face
        but takes the lip directions (liplock) from the first step's prediction, the model's
        conditional mean given the speech, guided by g (module `liplock`, "mean lips");
        with "lip_draws": K that prediction is averaged over K fixed noises (one estimate
        shared by every take) instead of read from each take's own start; with
        "lip_guidance_along": "opening" the guidance moves that estimate only along the direction
        that opens the lips (liplock.opening_direction), the rest stays the unguided estimate; with
        "lip_opening_std_mm" the guidance goes only as far as the clip's lips need to open that much
        (liplock.articulate). Returns z and the lip guidance the mean lips got (None: sampled lips)."""
        n, t_len = len(seeds), feats.shape[0]
        lip_g = mean_lips_guidance(lips) if self.shares_lips else None
        mean_lips, lip_guidance = lip_g is not None, lip_g or 1.0
        draws = mean_lips_draws(lips) if mean_lips else None
        along = self._opening if mean_lips and mean_lips_along(lips) == "opening" else None
        target = mean_lips_opening_std(lips) if mean_lips else None
        used: list[float] = []  # the guidance the mean lips got, per estimate

        def lips_of(cond, guided_x0):
            """The mean lips from the unguided estimate `cond` and the guided one (T, 53)."""
            g_lips = guide_lips(cond, guided_x0, along)
            if target is None:
                used.append(lip_guidance)
                return g_lips
            g_lips, share = articulate(cond, g_lips, self._separation_mm, target)
            used.append(1.0 + share * (lip_guidance - 1.0))
            return g_lips

        use_null = (guidance != 1.0 or lip_guidance != 1.0) and not self._deterministic
        ctx1 = self._context(feats, use_null)
        first: list[np.ndarray] = []  # the first step's x0: the mean-lips source

        contexts: dict[tuple[int, int], np.ndarray] = {}

        def run(x_cond, x_null, t):
            """x0 of the rows x_cond with the speech and x_null with the null audio, one pass."""
            rows = (len(x_cond), len(x_null))
            if rows not in contexts:  # every row sees the same audio: repeat the context, once per layout
                cond, null = np.repeat(ctx1[:, :, :1], rows[0], axis=2), np.repeat(ctx1[:, :, 1:], rows[1], axis=2)
                contexts[rows] = np.concatenate([cond, null], axis=2)
            ctx = contexts[rows]
            xx = np.concatenate([x_cond, x_null])
            return self.bundle.run("denoiser", {"x": xx, "t": np.full(len(xx), t, np.int64), "ctx": ctx})[0]

        def denoise(x, t):
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled during sampling")
            none = x[:0]
            # the null rows cost a second pass: only for guidance, or for the mean lips' one step
            with_null = guidance != 1.0
            if not (mean_lips and not first):
                x0 = run(x, x if with_null else none, t)
            elif draws is None:  # each take's own first prediction
                with_null = with_null or lip_guidance != 1.0
                x0 = run(x, x if with_null else none, t)
                if with_null:
                    g_x0 = guided(x0[:n], x0[n:], lip_guidance)
                    first.append(np.stack([lips_of(c, g) for c, g in zip(x0[:n], g_x0)]))
                else:
                    first.append(x0[:n])
            else:  # K fixed starts, averaged: the same lips for every take
                lip_x = lip_draw_noise(draws, x.shape[1:])
                lip_null = lip_x if lip_guidance != 1.0 else none
                out = run(np.concatenate([x, lip_x]), np.concatenate([x if with_null else none, lip_null]), t)
                x0 = np.concatenate([out[:n], out[n + draws : 2 * n + draws]]) if with_null else out[:n]
                lip_c, lip_n = out[n : n + draws], out[len(out) - len(lip_null) :]
                cond = lip_c.mean(0)
                first.append(lips_of(cond, guided(lip_c, lip_n, lip_guidance).mean(0)) if len(lip_null) else cond)
            return guided(x0[:n], x0[n:], guidance) if guidance != 1.0 else x0[:n]

        if self._deterministic:
            return denoise(np.zeros((n, t_len, N_PARAMS), np.float32), 0), None
        x_T, noise = take_noise(seeds, (t_len, N_PARAMS))
        if self.shares_lips:
            x_T = share_lip_noise(x_T, self._lip_dirs)
        z = sample(denoise, x_T, self.schedule, sampler, steps, noise, progress)
        if not mean_lips:
            return z, None
        return replace_lips(z, first[0], self._lip_dirs), float(np.mean(used)) if used else 1.0

    def _separation_mm(self, z: np.ndarray) -> np.ndarray:
        """(N,) lip mid-points' separation (mm) of whitened motion z (N, 53)."""
        return self._lip_pair.separation_mm(z @ self._chol_t + self._mean)

    def animate(
        self,
        audio,
        *,
        takes: int = 4,
        seed: int = 0,
        preset: str = "default",
        sampler: str | None = None,
        steps: int | None = None,
        guidance: float = 1.0,
        progress: Callable[[float], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> AnimateResult:
        t0 = time.perf_counter()
        audio = check_audio(audio)
        if preset not in self.presets:
            raise SamplerError(f"unknown preset {preset!r}; this bundle has {', '.join(self.presets)}")
        sampler = sampler or self.presets[preset]["sampler"]
        steps = int(steps if steps is not None else self.presets[preset]["steps"])
        check_sampler(sampler)
        if steps < 1:  # a sampler's domain (SamplerError), before the request's ranges
            raise SamplerError(f"steps must be >= 1, got {steps}")
        check_request(int(takes), int(seed), steps, float(guidance))
        n_frames = audio.size // SAMPLES_PER_FRAME
        if n_frames > self.max_frames:
            raise ValueError(
                f"audio is {n_frames} frames long; animate() takes at most {self.max_frames} "
                f"frames per pass (split longer clips into windows)"
            )
        report = (lambda f: progress(min(1.0, max(0.0, f)))) if progress else (lambda f: None)
        seeds = [int(seed) + i for i in range(int(takes))]
        with self._lock:
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled before start")
            feats = self.encode(audio, n_frames)
            t1 = time.perf_counter()
            report(PROGRESS_ENCODED)
            z, lip_g = self._sample(
                feats,
                seeds,
                sampler,
                steps,
                float(guidance),
                lambda f: report(PROGRESS_ENCODED + (PROGRESS_SAMPLED - PROGRESS_ENCODED) * f),
                cancel,
                self.presets[preset],
            )
            if keeps_lips_apart(self.presets[preset]):
                z, _ = keep_apart(z, self._mean, self._chol_t.T, self._lip_dirs, self._lip_pair)
            t2 = time.perf_counter()
            x = z @ self._chol_t + self._mean
            speech_mel, spk = self._speech_side(audio)
            if self.one_mouth(preset):  # every take has these lips: score them once
                scores = self._scores(speech_mel, spk, x[:1, :, :N_EXP], x[:1, :, N_EXP:]) * len(x)
            else:
                scores = self._scores(speech_mel, spk, x[..., :N_EXP], x[..., N_EXP:])
            t3 = time.perf_counter()
        report(1.0)
        out = [
            Take(
                s,
                np.ascontiguousarray(xi[:, :N_EXP], np.float32),
                np.ascontiguousarray(xi[:, N_EXP:], np.float32),
                float(sc),
            )
            for s, xi, sc in zip(seeds, x, scores)
        ]
        timings = {"encode": t1 - t0, "sample": t2 - t1, "score": t3 - t2, "engine_total": t3 - t0}
        return AnimateResult(out, timings, lip_guidance=lip_g)

    # ----------------------------------------------------------------- M2S
    def _speech_side(self, audio):
        if "m2s" not in self.bundle.sessions:
            return None, None
        return feat.log_mel(audio, self.features), self.speaker(audio)

    def _m2s_mel(self, exp, jaw, spk) -> np.ndarray:
        """M2S log-mel (B, 4 T, n_mels) of takes exp (B, T, 50), jaw (B, T, 3), all in one pass."""
        exp, jaw = np.asarray(exp, np.float32), np.asarray(jaw, np.float32)
        feeds = {}
        for inp in self.bundle.sessions["m2s"].get_inputs():
            if inp.name == "exp":
                feeds[inp.name] = exp
            elif inp.name == "jaw":
                feeds[inp.name] = jaw
            elif inp.name == "speaker":
                s = spk if spk is not None else self._speaker_default
                if s is None:  # no speech to embed and no mean speaker in the bundle
                    s = np.zeros(inp.shape[-1], np.float32)
                feeds[inp.name] = np.repeat(np.asarray(s, np.float32).reshape(1, -1), len(exp), axis=0)
            else:
                raise BundleError(f"m2s graph has an input {inp.name!r} this engine does not know")
        outs = dict(zip([o.name for o in self.bundle.sessions["m2s"].get_outputs()], self.bundle.run("m2s", feeds)))
        return outs["mel"]

    def _scores(self, speech_mel, spk, exp, jaw) -> list[float]:
        """Lip-sync scores of takes (B, T, ...) against the speech, SCORE_BATCH takes per M2S pass:
        M2S attends over the whole window, and 32 takes at once peaked at 970 MB for a 10 s
        window against 620 MB in batches of 8, in the same time and with the same scores."""
        if speech_mel is None:
            return [0.0] * len(exp)
        scores = []
        for i in range(0, len(exp), SCORE_BATCH):
            pred = self._m2s_mel(exp[i : i + SCORE_BATCH], jaw[i : i + SCORE_BATCH], spk)
            n = min(pred.shape[1], len(speech_mel))
            scores += [feat.band_correlation(p[:n], speech_mel[:n]) if n >= 2 else 0.0 for p in pred]
        return scores

    def score(self, audio, exp, jaw) -> float:
        """M2S lip-sync score of one take against the speech (mean mel-band correlation, higher = better)."""
        audio = check_audio(audio)
        with self._lock:
            speech_mel, spk = self._speech_side(audio)
            return self._scores(speech_mel, spk, np.asarray(exp)[None], np.asarray(jaw)[None])[0]

    def hear(self, exp, jaw) -> np.ndarray:
        """What M2S hears from one window of a take: its mel through Griffin-Lim, 16 kHz float32,
        not normalised (windows.listen stitches windows, then normalises the whole)."""
        from backend.vocoder import vocode

        if "m2s" not in self.bundle.sessions:
            raise BundleError("this bundle has no m2s graph to listen with")
        with self._lock:
            mel = self._m2s_mel(np.asarray(exp)[None], np.asarray(jaw)[None], None)[0]
        return vocode(mel, self.features, normalise=False)

    def listen(self, exp, jaw, cancel: threading.Event | None = None) -> np.ndarray:
        """What M2S hears from a take of any length (windowed: backend/windows.py), 16 kHz float32."""
        from backend.windows import listen

        if "m2s" not in self.bundle.sessions:
            raise BundleError("this bundle has no m2s graph to listen with")
        return listen(self, np.asarray(exp, np.float32), np.asarray(jaw, np.float32), cancel=cancel)
