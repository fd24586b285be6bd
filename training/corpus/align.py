"""Phone and word times for recorded speech with a known transcript.

Two aligners, one result form ((start s, end s, label) phones over the whole clip,
(start s, end s, word) words), each with quality gates that drop a clip rather
than keep wrong times:

- English: pocketsphinx forced alignment (its US-English acoustic model and
  CMUdict). Gates: no non-pause phone longer than MAX_PHONE_S, an acoustic score
  per frame above MIN_SCORE_PER_FRAME, and little speech energy inside the pauses
  the aligner placed (words the transcript missed end up there).
- Other languages: synthesis + DTW, the way subtitle aligners such as aeneas work:
  espeak-ng speaks the transcript in the clip's language with exact phone events,
  and dynamic time warping over mean/variance-normalised MFCCs maps those times
  onto the recording. espeak-ng's phonemiser gives the phones (mapped to the
  corpus inventory); the DTW gate drops clips whose warped distance per step is
  high or whose length differs from the synthesis by more than MAX_STRETCH.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

import numpy as np

from backend.contracts import SAMPLE_RATE

from .phones import SIL, cmu_to_arpa, foreign_to_arpa

log = logging.getLogger(__name__)
MAX_PHONE_S = 0.45  # a longer non-pause phone means the text was wrong
MIN_SCORE_PER_FRAME = -90  # pocketsphinx acoustic score per 10 ms frame
MAX_SPEECH_IN_PAUSES = 0.35
HOP = 160  # 10 ms at 16 kHz, both aligners' frame
MAX_STRETCH = 2.5  # recording / synthesis length, either way (acted speech runs ~1.3x espeak)
MAX_DTW_COST = (
    0.80  # cosine distance per path step; matched transcripts: median 0.70 (fr) - 0.77 (cs), a neighbour's: 0.87
)
ESPEAK_VOICES = {"es": "es", "fr": "fr", "it": "it", "ru": "ru", "cs": "cs", "nl": "nl", "de": "de", "en": "en-us"}


def _frame_energy(audio: np.ndarray) -> np.ndarray:
    """RMS per 10 ms frame (a trailing partial frame is dropped)."""
    frames = audio[: len(audio) // HOP * HOP].reshape(-1, HOP)
    return np.sqrt((frames**2).mean(axis=1) + 1e-12)


def speech_in_pauses(audio: np.ndarray, phones: list) -> float:
    """Share of 10 ms frames inside long 'sil' stretches that are as loud as speech:
    high when the text missed words and the aligner parked them in a pause."""
    energy = _frame_energy(audio)
    loud = energy > 0.15 * np.percentile(energy, 95)
    inside = np.zeros(len(energy), bool)
    for s, e, lab in phones:
        if lab == SIL and e - s > 0.25:
            inside[int(s * 100) + 5 : int(e * 100) - 5] = True
    return float(loud[inside].mean()) if inside.any() else 0.0


# ---- English: pocketsphinx ---------------------------------------------------------------


@lru_cache(maxsize=1)
def _sphinx():
    from pocketsphinx import Decoder, get_model_path

    with open(f"{get_model_path()}/en-us/cmudict-en-us.dict") as f:
        vocab = {line.split(" ", 1)[0] for line in f}
    return Decoder(loglevel="FATAL"), vocab


def english_words(text: str) -> list[str]:
    """Transcript -> CMUdict tokens (lower case, apostrophes kept, punctuation dropped)."""
    text = text.lower().replace("’", "'").replace("-", " ")
    return [w.strip("'") for w in re.findall(r"[a-z']+", text) if w.strip("'")]


def sphinx_align(audio: np.ndarray, text: str) -> tuple[list, list] | None:
    """(words, phones) of 16 kHz `audio` saying `text`, or None when a word is not in
    CMUdict, the aligner fails, or a quality gate rejects it."""
    decoder, vocab = _sphinx()
    words_in = english_words(text)
    if not words_in or any(w not in vocab for w in words_in):
        return None
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()
    # pocketsphinx's front end keeps state from clip to clip (the same clip aligned after
    # another moved by up to 20 ms): a fresh one makes a clip's times its own
    decoder.reinit_feat()

    def run():
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()

    try:
        decoder.set_align_text(" ".join(words_in))
        run()
        decoder.set_alignment()
        run()
        alignment = decoder.get_alignment()
    except RuntimeError:
        return None
    words, phones, score, frames = [], [], 0, 0
    for w in alignment:
        name = re.sub(r"\(\d+\)$", "", w.name)
        if name not in ("<s>", "</s>", "<sil>", "[NOISE]"):
            words.append((w.start / 100, (w.start + w.duration) / 100, name))
        score, frames = score + w.score, frames + w.duration
        for p in w:
            phones.append((p.start / 100, (p.start + p.duration) / 100, cmu_to_arpa(p.name)))
    longest = max((e - s for s, e, lab in phones if lab != SIL), default=0.0)
    if (
        not words
        or longest > MAX_PHONE_S
        or score / max(frames, 1) < MIN_SCORE_PER_FRAME
        or speech_in_pauses(audio, phones) > MAX_SPEECH_IN_PAUSES
    ):
        return None
    return words, phones


# ---- other languages: espeak-ng synthesis + DTW ------------------------------------------


def _mfcc(audio: np.ndarray) -> np.ndarray:
    """(frames, 39) MFCC + deltas at 10 ms, normalised per clip (speaker and channel fall out)."""
    import librosa

    m = librosa.feature.mfcc(y=audio, sr=SAMPLE_RATE, n_mfcc=13, n_fft=400, hop_length=HOP, n_mels=40)
    f = np.concatenate([m, librosa.feature.delta(m), librosa.feature.delta(m, order=2)])
    f = (f - f.mean(axis=1, keepdims=True)) / (f.std(axis=1, keepdims=True) + 1e-6)
    return f.T.astype(np.float32)


def _trim(audio: np.ndarray) -> tuple[int, int]:
    """First and last sample of speech (energy above 5 % of the 95th percentile, 10 ms frames)."""
    energy = _frame_energy(audio)
    if not len(energy):
        return 0, len(audio)
    loud = np.nonzero(energy > 0.05 * np.percentile(energy, 95))[0]
    if not len(loud):
        return 0, len(audio)
    return int(loud[0] * HOP), int(min((loud[-1] + 1) * HOP, len(audio)))


def synth_align(audio: np.ndarray, text: str, lang: str) -> tuple[list, list] | None:
    """(words, phones) of 16 kHz `audio` saying `text` in `lang`, or None when the gates reject it."""
    import librosa
    import soxr

    from . import espeak

    voice = ESPEAK_VOICES.get(lang)
    if voice is None:
        return None
    syn = espeak.synthesize(text, voice, 160, 50, 50)
    if not syn.phones or not len(syn.audio):
        return None
    ref = soxr.resample(syn.audio, syn.sample_rate, SAMPLE_RATE).astype(np.float32)
    scale = SAMPLE_RATE / syn.sample_rate
    r0, r1 = _trim(ref)
    a0, a1 = _trim(audio)
    if not (1 / MAX_STRETCH <= (a1 - a0) / max(r1 - r0, 1) <= MAX_STRETCH):
        return None
    fr, fa = _mfcc(ref[r0:r1]), _mfcc(audio[a0:a1])
    cost, path = librosa.sequence.dtw(X=fr.T, Y=fa.T, metric="cosine", backtrack=True)
    path = path[::-1]
    if cost[-1, -1] / len(path) > MAX_DTW_COST:
        return None
    # synthesis frame -> recording frame (first match), monotone by construction
    first = np.full(len(fr), -1)
    for i, j in path:
        if first[i] < 0:
            first[i] = j

    def warp(sample: float) -> float:
        i = int(np.clip((sample * scale - r0) / HOP, 0, len(fr) - 1))
        return (a0 + first[i] * HOP) / SAMPLE_RATE

    n = len(syn.audio)
    raw = []
    for k, (smp, name) in enumerate(syn.phones):
        end = syn.phones[k + 1][0] if k + 1 < len(syn.phones) else n
        lab = foreign_to_arpa(name, lang)
        s, e = warp(smp), warp(end)
        if lab != SIL and e > s:
            raw.append((s, e, lab))
    if not raw:
        return None
    phones = _fill(raw, len(audio) / SAMPLE_RATE)
    longest = max((e - s for s, e, lab in phones if lab != SIL), default=0.0)
    if longest > MAX_PHONE_S:
        return None
    words = []
    for k, (smp, pos, length) in enumerate(syn.words):
        end = syn.words[k + 1][0] if k + 1 < len(syn.words) else n
        word = text.encode("utf-8")[pos - 1 : pos - 1 + length].decode("utf-8", "replace").strip(".,?!;:")
        words.append((warp(smp), warp(end), word))
    return words, phones


def _fill(raw: list, duration: float) -> list:
    """Phones in order with 'sil' in the gaps, covering [0, duration]."""
    out, t = [], 0.0
    for s, e, lab in raw:
        s = max(s, t)
        if e - s < 1e-4:
            continue
        if s - t > 1e-4:
            out.append((t, s, SIL))
        out.append((s, e, lab))
        t = e
    if duration - t > 1e-4:
        out.append((t, duration, SIL))
    return out


def align(audio: np.ndarray, text: str, lang: str) -> tuple[list, list] | None:
    """The aligner for the language: pocketsphinx for English, synthesis + DTW otherwise."""
    return sphinx_align(audio, text) if lang == "en" else synth_align(audio, text, lang)
