"""A tiny corpus in the docs/corpus.md layout for the speech and M2S tests.

Real espeak-ng speech with its exact phone times; motion is a simple function of
the phones (jaw follows vowel openness, expression follows a fixed phone->psi
map), enough for the trainers to learn something in seconds. The full corpus
engine (training/corpus) is exercised by its own tests.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from training.corpus.espeak import synthesize
from training.corpus.phones import INVENTORY, OPENNESS, espeak_to_arpa

SENTENCES = [
    "Bin blue at f two now.", "Place red by a seven soon.", "The quick brown fox jumps over the lazy dog.",
    "Maggie ate a big purple plum.", "Vera found five warm shoes.", "Paul will move the boat by the beach.",
    "Oliver saw a huge orange moon.", "Set white with b nine please.", "Judy made a smooth wooden bridge.",
    "Bob and Fiona keep the sheep.",
]
SPEAKERS = [("en-us+m3", 45, "train"), ("en-us+f2", 65, "train"), ("en+m1", 40, "val"), ("en-us+f4", 60, "test")]


def build_tiny_corpus(out: str | Path, per_speaker: int = 5, seed: int = 0) -> Path:
    out = Path(out)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    (out / "motion").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    phone_to_psi = rng.normal(0, 0.6, (len(INVENTORY), 50)).astype(np.float32)
    speakers, entries = {}, []
    for s, (voice, pitch, split) in enumerate(SPEAKERS):
        name = f"tiny{s}"
        speakers[name] = {"source": "espeak", "split": split, "style": {}}
        for i in range(per_speaker):
            text = SENTENCES[(s * 3 + i) % len(SENTENCES)]
            syn = synthesize(text, voice=voice, pitch=pitch)
            audio = soxr.resample(syn.audio, syn.sample_rate, 16000).astype(np.float32)
            dur = len(audio) / 16000
            starts = np.array([p[0] / syn.sample_rate for p in syn.phones], dtype=np.float32)
            phones = [espeak_to_arpa(p[1]) for p in syn.phones]
            ends = np.append(starts[1:], dur).astype(np.float32)
            n_frames = int(dur * 25)
            centres = (np.arange(n_frames) + 0.5) / 25
            k = np.clip(np.searchsorted(starts, centres, side="right") - 1, 0, len(phones) - 1)
            ids = np.array([INVENTORY.index(phones[j]) for j in k])
            jaw = np.zeros((n_frames, 3), np.float32)
            jaw[:, 0] = 0.3 * np.array([OPENNESS.get(phones[j], 0.05) for j in k])
            kernel = np.ones(3) / 3
            jaw[:, 0] = np.convolve(jaw[:, 0], kernel, mode="same")
            exp = phone_to_psi[ids] * (jaw[:, :1] + 0.2)
            uid = f"{name}_{i:03d}"
            sf.write(out / "wav" / f"{uid}.wav", audio, 16000, subtype="PCM_16")
            np.savez(out / "motion" / f"{uid}.npz", exp=exp, jaw=jaw, fps=25, phones_start=starts,
                     phones_end=ends, phones=np.array(phones), words_start=np.zeros(0, np.float32),
                     words_end=np.zeros(0, np.float32), words=np.array([], dtype=str), speaker=name,
                     source="espeak", text=text)
            entries.append({"id": uid, "wav": f"wav/{uid}.wav", "motion": f"motion/{uid}.npz", "speaker": name,
                            "source": "espeak", "split": split, "duration": dur, "n_frames": n_frames})
    manifest = {"version": 1, "fps": 25, "sample_rate": 16000, "head_id": "tiny", "speakers": speakers,
                "utterances": entries}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out
