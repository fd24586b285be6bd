"""M2S training data: per-utterance motion, log-mel, speech units and speaker embedding.

Targets are computed once per split into `<run>/cache/<split>.npz` (flat arrays
plus frame offsets) and reused when the corpus, encoder and units are the same.
The motion of T frames pairs with the first T * 640 samples of audio, i.e. 4T mel
frames (100 Hz) and 2T unit frames (50 Hz).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from backend.features import log_mel
from training.speech.data import load_audio, load_motion, utterances
from training.speech.encoder import HOP_25
from training.provenance import file_sha256


def _fit(audio: np.ndarray, n: int) -> np.ndarray:
    return audio[:n] if len(audio) >= n else np.pad(audio, (0, n - len(audio)))


def utterance_targets(corpus, utt: dict, encoder, units) -> dict:
    """One utterance -> exp (T,50), jaw (T,3), mel (4T,80), units (2T,), speaker (256,)."""
    from training.speech.speaker import embed_audio

    motion = load_motion(corpus, utt)
    audio = load_audio(corpus, utt)
    t = len(motion["exp"])
    clip = _fit(audio, t * HOP_25)
    return {
        "exp": motion["exp"].astype(np.float32),
        "jaw": motion["jaw"].astype(np.float32),
        "mel": log_mel(clip),
        "units": units.from_audio(encoder, clip),
        "speaker": embed_audio(audio),
        "text": str(motion.get("text", "")),
        "id": utt["id"],
    }


class Split:
    """Flat arrays of one split with per-utterance frame offsets (25 Hz)."""

    def __init__(self, arrays: dict):
        self.exp, self.jaw, self.mel, self.units = arrays["exp"], arrays["jaw"], arrays["mel"], arrays["units"]
        self.speaker, self.offsets = arrays["speaker"], arrays["offsets"]
        self.ids, self.texts = list(arrays["ids"]), list(arrays["texts"])

    def __len__(self) -> int:
        return len(self.ids)

    def utterance(self, i: int) -> dict:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return {
            "exp": self.exp[a:b],
            "jaw": self.jaw[a:b],
            "mel": self.mel[4 * a : 4 * b],
            "units": self.units[2 * a : 2 * b],
            "speaker": self.speaker[i],
            "id": self.ids[i],
            "text": self.texts[i],
        }

    def windows(self, window: int) -> list[tuple[int, int, int]]:
        """Non-overlapping (utt, start, length) windows covering every utterance (validation)."""
        out = []
        for i in range(len(self)):
            n = int(self.offsets[i + 1] - self.offsets[i])
            out += [(i, s, min(window, n - s)) for s in range(0, n, window) if n - s >= 4]
        return out

    def batch(self, items: list[tuple[int, int, int]], window: int) -> dict:
        """(utt, start, length) items -> padded tensors with a 25 Hz validity mask."""
        b = len(items)
        out = {
            "exp": np.zeros((b, window, 50), np.float32),
            "jaw": np.zeros((b, window, 3), np.float32),
            "mel": np.zeros((b, 4 * window, self.mel.shape[1]), np.float32),
            "units": np.zeros((b, 2 * window), np.int64),
            "mask": np.zeros((b, window), bool),
            "speaker": np.zeros((b, self.speaker.shape[1]), np.float32),
        }
        for k, (i, s, n) in enumerate(items):
            a = int(self.offsets[i]) + s
            out["exp"][k, :n], out["jaw"][k, :n] = self.exp[a : a + n], self.jaw[a : a + n]
            out["mel"][k, : 4 * n] = self.mel[4 * a : 4 * (a + n)]
            out["units"][k, : 2 * n] = self.units[2 * a : 2 * (a + n)]
            out["mask"][k, :n] = True
            out["speaker"][k] = self.speaker[i]
        return {k: torch.from_numpy(v) for k, v in out.items()}

    def random_batch(self, rng: np.random.Generator, size: int, window: int) -> dict:
        lengths = np.diff(self.offsets)
        picks = rng.choice(len(self), size=size, p=lengths / lengths.sum())
        items = []
        for i in picks:
            n = int(lengths[i])
            s = int(rng.integers(0, max(1, n - window + 1)))
            items.append((int(i), s, min(window, n - s)))
        return self.batch(items, window)


def build_split(corpus, split: str, encoder, units, limit: int | None = None) -> Split:
    utts = utterances(corpus, split, limit=limit)
    parts = [
        utterance_targets(corpus, u, encoder, units) for u in tqdm(utts, desc=f"m2s targets {split}", mininterval=5)
    ]
    frames = [len(p["exp"]) for p in parts]
    return Split(
        {
            "exp": np.concatenate([p["exp"] for p in parts]),
            "jaw": np.concatenate([p["jaw"] for p in parts]),
            "mel": np.concatenate([p["mel"] for p in parts]),
            "units": np.concatenate([p["units"] for p in parts]),
            "speaker": np.stack([p["speaker"] for p in parts]),
            "offsets": np.concatenate([[0], np.cumsum(frames)]).astype(np.int64),
            "ids": np.array([p["id"] for p in parts]),
            "texts": np.array([p["text"] for p in parts]),
        }
    )


def cache_key(encoder_path, units_path) -> dict:
    """What the cached targets depend on besides the corpus: the encoder and units files."""
    encoder_path, units_path = Path(encoder_path), Path(units_path)
    enc_file = encoder_path / "best.pt" if encoder_path.is_dir() else encoder_path
    return {
        "encoder": str(encoder_path.resolve()),
        "encoder_sha256": file_sha256(enc_file) if enc_file.is_file() else "pretrained",
        "units_sha256": file_sha256(units_path / "units.npz" if units_path.is_dir() else units_path),
    }


def load_split(cache_dir, corpus, split: str, encoder, units, key: dict, limit: int | None = None) -> Split:
    """Cached targets of one split; rebuilt when `key` (corpus, encoder, units, limit) changed."""
    cache_dir = Path(cache_dir)
    # one file per (split, limit): the M2S trainer (val limited) and the denoiser's M2S loss (all of val)
    # share a cache folder and must not overwrite each other's targets
    stem = split if limit is None else f"{split}-{limit}"
    path, meta = cache_dir / f"{stem}.npz", cache_dir / f"{stem}.json"
    key = {**key, "manifest": file_sha256(Path(corpus) / "manifest.json"), "limit": limit}
    if path.exists() and meta.exists() and json.loads(meta.read_text()) == key:
        with np.load(path) as z:
            return Split({k: z[k] for k in z.files})
    data = build_split(corpus, split, encoder, units, limit)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        exp=data.exp,
        jaw=data.jaw,
        mel=data.mel,
        units=data.units,
        speaker=data.speaker,
        offsets=data.offsets,
        ids=np.array(data.ids),
        texts=np.array(data.texts),
    )
    meta.write_text(json.dumps(key))
    return data
