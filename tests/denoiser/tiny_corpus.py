"""A tiny corpus in the docs/corpus.md layout: audio whose loudness drives the jaw.

Not the corpus engine's output (that is tested in tests/corpus): just enough real
files for the denoiser's data path, training and evaluation to run in seconds.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

FPS, SR = 25, 16000


def _utterance(rng: np.random.Generator, seconds: float, pitch: float):
    n = int(seconds * SR)
    t = np.arange(n) / SR
    n_frames = n * FPS // SR
    # syllable-rate envelope (4 Hz-ish), smooth
    env_f = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * np.arange(n_frames) / FPS + rng.uniform(0, 6)), 0, None)
    env = np.interp(t, (np.arange(n_frames) + 0.5) / FPS, env_f)
    audio = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 6)) * env * 0.2
    audio += rng.normal(0, 0.003, n)
    exp = np.zeros((n_frames, 50), np.float32)
    exp[:, 0] = env_f * 0.8                     # mouth opening with the loudness
    exp[:, 1:6] = rng.normal(0, 0.05, (1, 5))   # a speaker-ish constant
    jaw = np.zeros((n_frames, 3), np.float32)
    jaw[:, 0] = env_f * 0.2
    return audio.astype(np.float32), exp, jaw


def make_tiny_corpus(out: Path, n_per_speaker: int = 4, seed: int = 0) -> Path:
    out = Path(out)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    (out / "motion").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = {"spk_a": "train", "spk_b": "train", "spk_c": "val", "spk_d": "test"}
    utts = []
    for si, (spk, split) in enumerate(splits.items()):
        for k in range(n_per_speaker):
            uid = f"{spk}_{k:03d}"
            audio, exp, jaw = _utterance(rng, rng.uniform(2.0, 3.6), 110 + 40 * si)
            sf.write(out / "wav" / f"{uid}.wav", audio, SR, subtype="PCM_16")
            np.savez(out / "motion" / f"{uid}.npz", exp=exp, jaw=jaw, fps=FPS,
                     phones_start=np.array([0.0], np.float32), phones_end=np.array([len(audio) / SR], np.float32),
                     phones=np.array(["sil"]), words_start=np.zeros(0, np.float32),
                     words_end=np.zeros(0, np.float32), words=np.array([], dtype="<U1"),
                     speaker=spk, source="tiny", text="")
            utts.append({"id": uid, "wav": f"wav/{uid}.wav", "motion": f"motion/{uid}.npz", "speaker": spk,
                         "source": "tiny", "split": split, "duration": len(audio) / SR, "n_frames": len(exp)})
    manifest = {"version": 1, "fps": FPS, "sample_rate": SR, "head_id": "",
                "speakers": {s: {"source": "tiny", "split": sp, "style": {}} for s, sp in splits.items()},
                "utterances": utts}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out
