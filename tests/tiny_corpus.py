"""Tiny corpora in the docs/corpus.md layout, for tests that need a corpus in seconds.

Not the corpus engine's output (tests/corpus tests that): just enough real files
for the data paths, trainers and evaluations to run. Two kinds share one writer:
- `loudness_corpus`: a synthetic voiced signal whose loudness drives the jaw and
  mouth opening (the denoiser's and the engine's tests; no synthesiser needed);
- `espeak_corpus`: real espeak-ng speech with its exact phone times; the jaw follows
  vowel openness and the expression a fixed phone -> psi map (speech and M2S tests).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

FPS, SR = 25, 16000


def _no_words() -> dict:
    return {
        "words_start": np.zeros(0, np.float32),
        "words_end": np.zeros(0, np.float32),
        "words": np.array([], dtype="<U1"),
    }


def write_utterance(
    out: Path,
    uid: str,
    audio: np.ndarray,
    exp: np.ndarray,
    jaw: np.ndarray,
    *,
    speaker: str,
    source: str,
    split: str,
    phones: tuple,
    text: str = "",
) -> dict:
    """wav/<uid>.wav + motion/<uid>.npz; returns the manifest entry. `phones`: (starts, ends, names)."""
    starts, ends, names = phones
    sf.write(out / "wav" / f"{uid}.wav", audio, SR, subtype="PCM_16")
    np.savez(
        out / "motion" / f"{uid}.npz",
        exp=exp,
        jaw=jaw,
        fps=FPS,
        phones_start=starts,
        phones_end=ends,
        phones=np.array(names),
        **_no_words(),
        speaker=speaker,
        source=source,
        text=text,
    )
    return {
        "id": uid,
        "wav": f"wav/{uid}.wav",
        "motion": f"motion/{uid}.npz",
        "speaker": speaker,
        "source": source,
        "split": split,
        "duration": len(audio) / SR,
        "n_frames": len(exp),
    }


def _folders(out) -> Path:
    out = Path(out)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    (out / "motion").mkdir(parents=True, exist_ok=True)
    return out


def _manifest(out: Path, speakers: dict, entries: list, head_id: str) -> Path:
    manifest = {
        "version": 1,
        "fps": FPS,
        "sample_rate": SR,
        "head_id": head_id,
        "speakers": speakers,
        "utterances": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


# ---- loudness drives the face ----


def _loud_utterance(rng: np.random.Generator, seconds: float, pitch: float):
    n = int(seconds * SR)
    t = np.arange(n) / SR
    n_frames = n * FPS // SR
    # syllable-rate envelope (4 Hz-ish), smooth
    env_f = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * np.arange(n_frames) / FPS + rng.uniform(0, 6)), 0, None)
    env = np.interp(t, (np.arange(n_frames) + 0.5) / FPS, env_f)
    audio = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 6)) * env * 0.2
    audio += rng.normal(0, 0.003, n)
    exp = np.zeros((n_frames, 50), np.float32)
    exp[:, 0] = env_f * 0.8  # mouth opening with the loudness
    exp[:, 1:6] = rng.normal(0, 0.05, (1, 5))  # a speaker-ish constant
    jaw = np.zeros((n_frames, 3), np.float32)
    jaw[:, 0] = env_f * 0.2
    return audio.astype(np.float32), exp, jaw


def loudness_corpus(out, n_per_speaker: int = 4, seed: int = 0) -> Path:
    out = _folders(out)
    rng = np.random.default_rng(seed)
    splits = {"spk_a": "train", "spk_b": "train", "spk_c": "val", "spk_d": "test"}
    entries = []
    for si, (spk, split) in enumerate(splits.items()):
        for k in range(n_per_speaker):
            audio, exp, jaw = _loud_utterance(rng, rng.uniform(2.0, 3.6), 110 + 40 * si)
            silence = (np.array([0.0], np.float32), np.array([len(audio) / SR], np.float32), ["sil"])
            entries.append(
                write_utterance(
                    out, f"{spk}_{k:03d}", audio, exp, jaw, speaker=spk, source="tiny", split=split, phones=silence
                )
            )
    speakers = {s: {"source": "tiny", "split": sp, "style": {}} for s, sp in splits.items()}
    return _manifest(out, speakers, entries, head_id="")


# ---- real espeak-ng speech, motion from its phones ----

SENTENCES = [
    "Bin blue at f two now.",
    "Place red by a seven soon.",
    "The quick brown fox jumps over the lazy dog.",
    "Maggie ate a big purple plum.",
    "Vera found five warm shoes.",
    "Paul will move the boat by the beach.",
    "Oliver saw a huge orange moon.",
    "Set white with b nine please.",
    "Judy made a smooth wooden bridge.",
    "Bob and Fiona keep the sheep.",
]
SPEAKERS = [("en-us+m3", 45, "train"), ("en-us+f2", 65, "train"), ("en+m1", 40, "val"), ("en-us+f4", 60, "test")]


def espeak_corpus(out, per_speaker: int = 5, seed: int = 0) -> Path:
    import soxr

    from training.corpus.espeak import synthesize
    from training.corpus.phones import INVENTORY, OPENNESS, espeak_to_arpa

    out = _folders(out)
    rng = np.random.default_rng(seed)
    phone_to_psi = rng.normal(0, 0.6, (len(INVENTORY), 50)).astype(np.float32)
    speakers, entries = {}, []
    for s, (voice, pitch, split) in enumerate(SPEAKERS):
        name = f"tiny{s}"
        speakers[name] = {"source": "espeak", "split": split, "style": {}}
        for i in range(per_speaker):
            text = SENTENCES[(s * 3 + i) % len(SENTENCES)]
            syn = synthesize(text, voice=voice, pitch=pitch)
            audio = soxr.resample(syn.audio, syn.sample_rate, SR).astype(np.float32)
            dur = len(audio) / SR
            starts = np.array([p[0] / syn.sample_rate for p in syn.phones], dtype=np.float32)
            phones = [espeak_to_arpa(p[1]) for p in syn.phones]
            ends = np.append(starts[1:], dur).astype(np.float32)
            n_frames = int(dur * FPS)
            centres = (np.arange(n_frames) + 0.5) / FPS
            k = np.clip(np.searchsorted(starts, centres, side="right") - 1, 0, len(phones) - 1)
            ids = np.array([INVENTORY.index(phones[j]) for j in k])
            jaw = np.zeros((n_frames, 3), np.float32)
            jaw[:, 0] = 0.3 * np.array([OPENNESS.get(phones[j], 0.05) for j in k])
            jaw[:, 0] = np.convolve(jaw[:, 0], np.ones(3) / 3, mode="same")
            exp = phone_to_psi[ids] * (jaw[:, :1] + 0.2)
            entries.append(
                write_utterance(
                    out,
                    f"{name}_{i:03d}",
                    audio,
                    exp,
                    jaw,
                    speaker=name,
                    source="espeak",
                    split=split,
                    phones=(starts, ends, phones),
                    text=text,
                )
            )
    return _manifest(out, speakers, entries, head_id="tiny")
