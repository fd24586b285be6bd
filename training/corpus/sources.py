"""One utterance from each speech source, in one form: 16 kHz audio, phones, words.

Phones are (start s, end s, label) covering [0, duration] without gaps ('sil' in
between); words are (start s, end s, word). Synthetic speech gets a short random
silence either side so every clip starts and ends at rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import soxr

from backend.contracts import SAMPLE_RATE

from . import espeak, mbrola, recordings
from .phones import SIL, espeak_to_arpa, is_stressed


@dataclass
class Utterance:
    audio: np.ndarray  # float32, 16 kHz
    phones: list  # (start, end, label)
    words: list  # (start, end, word)
    text: str
    stressed: list | None = field(default=None)  # per phone, when the source knows stress

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def tidy(phones: list, duration: float, stressed: list | None = None):
    """Fill gaps with 'sil', merge neighbouring pauses, drop empty phones, clip to the audio."""
    out, flags, t = [], [], 0.0
    stressed = stressed or [False] * len(phones)

    def add(s, e, lab, st):
        if lab == SIL and out and out[-1][2] == SIL:
            out[-1] = (out[-1][0], e, SIL)  # a pause next to a pause: one pause
        else:
            out.append((s, e, lab))
            flags.append(st)

    for (s, e, lab), st in zip(phones, stressed):
        s, e = max(s, t), min(e, duration)
        if e - s < 1e-4:
            continue
        if s - t > 1e-4:
            add(t, s, SIL, False)
        add(s, e, lab, st)
        t = e
    if duration - t > 1e-4:
        add(t, duration, SIL, False)
    return out, flags


def _pad(audio, phones, words, rng, lo=0.12, hi=0.4):
    """Silence either side (the face starts and ends at rest)."""
    a, b = rng.uniform(lo, hi, 2)
    na, nb = int(a * SAMPLE_RATE), int(b * SAMPLE_RATE)
    audio = np.concatenate([np.zeros(na, np.float32), audio, np.zeros(nb, np.float32)])
    dt, total = na / SAMPLE_RATE, len(audio) / SAMPLE_RATE
    end = phones[-1][1] + dt if phones else dt
    phones = [(0.0, dt, SIL)] + [(s + dt, e + dt, lab) for s, e, lab in phones] + [(end, total, SIL)]
    return audio, phones, [(s + dt, e + dt, w) for s, e, w in words]


def _level(audio: np.ndarray, rng) -> np.ndarray:
    peak = float(np.abs(audio).max()) or 1.0
    return (audio * (rng.uniform(0.4, 0.9) / peak)).astype(np.float32)


def espeak_utterance(text: str, speaker: dict, rng: np.random.Generator) -> Utterance:
    u = espeak_speech(text, speaker["voice"], speaker["rate"], speaker["pitch"], speaker["pitch_range"])
    audio, phones, words = _pad(u.audio, u.phones, u.words, rng)
    phones, flags = tidy(phones, len(audio) / SAMPLE_RATE, [False] + u.stressed + [False])
    return Utterance(_level(audio, rng), phones, words, text, flags)


def espeak_speech(text: str, voice: str, rate: int, pitch: int = 50, pitch_range: int = 50) -> Utterance:
    """espeak-ng's speech of `text` at 16 kHz with its exact phone and word times, no padding
    (the corpus pads and levels it; `make demo` plots against the bundled sentence's phones)."""
    syn = espeak.synthesize(text, voice, rate, pitch, pitch_range)
    sr, n = syn.sample_rate, len(syn.audio)
    raw, flags = [], []
    for k, (smp, name) in enumerate(syn.phones):
        end = syn.phones[k + 1][0] if k + 1 < len(syn.phones) else n
        raw.append((smp / sr, end / sr, espeak_to_arpa(name)))
        flags.append(is_stressed(name))
    phones, flags = tidy(raw, n / sr, flags)
    # word events fire a little before the word's first phone: snap to phone starts
    starts = []
    for smp, _, _ in syn.words:
        after = [ps for ps, pe, lab in phones if lab != SIL and ps >= smp / sr - 1e-6]
        starts.append(after[0] if after else smp / sr)
    words = []
    for k, (_smp, pos, length) in enumerate(syn.words):
        nxt = starts[k + 1] if k + 1 < len(starts) else n / sr
        ends = [pe for ps, pe, lab in phones if lab != SIL and starts[k] <= ps < nxt]
        word = text.encode("utf-8")[pos - 1 : pos - 1 + length].decode("utf-8", "replace")
        words.append((starts[k], ends[-1] if ends else nxt, word.strip(".,?!;:")))
    audio = soxr.resample(syn.audio, sr, SAMPLE_RATE).astype(np.float32)
    return Utterance(audio, phones, words, text, flags)


def mbrola_utterance(text: str, speaker: dict, rng: np.random.Generator) -> Utterance:
    audio, raw = mbrola.synthesize(text, speaker["voice"], speaker["rate"], speaker["pitch"])
    phones, _ = tidy(raw, len(audio) / SAMPLE_RATE)
    audio, phones, _ = _pad(audio, phones, [], rng)
    phones, _ = tidy(phones, len(audio) / SAMPLE_RATE)
    return Utterance(_level(audio, rng), phones, [], text)


def real_utterance(clip: dict) -> Utterance:
    """A recorded clip (training/corpus/recordings.py) with its aligned phones and words."""
    audio = recordings.load_audio(clip["path"])
    phones, _ = tidy([tuple(p) for p in clip["phones"]], len(audio) / SAMPLE_RATE)
    return Utterance(audio, phones, [tuple(w) for w in clip["words"]], clip["text"])
