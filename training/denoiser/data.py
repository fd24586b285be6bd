"""Denoiser training data: per-utterance speech features (frozen encoder, computed
once and cached) paired with motion x = [psi | jaw], cut into random windows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from backend.contracts import N_PARAMS
from training.speech.data import load_audio, load_motion, utterances


@dataclass
class Utterance:
    id: str
    speaker: str
    feats: np.ndarray  # (T, A) float32 speech features at 25 Hz
    x: np.ndarray  # (T, 53) float32 [psi | jaw]
    audio: np.ndarray | None = None  # 16 kHz, kept when the M2S loss needs the speech


def motion_x(motion: dict) -> np.ndarray:
    return np.concatenate([motion["exp"], motion["jaw"]], axis=1).astype(np.float32)


@torch.no_grad()
def encode_split(
    corpus: Path, encoder, split: str, cache: Path | None = None, limit: int | None = None, keep_audio: bool = False
) -> list[Utterance]:
    """Features and motion of one split; cached by (corpus manifest, encoder weights)."""
    utts = utterances(corpus, split, limit)
    key = None
    if cache is not None:
        h = hashlib.sha256((Path(corpus) / "manifest.json").read_bytes())
        for p in encoder.state_dict().values():
            h.update(p.detach().cpu().numpy().tobytes()[:4096])
        key = Path(cache) / f"{split}-{limit or 'all'}-{h.hexdigest()[:16]}.npz"
        if key.exists():
            return _load_cache(key, corpus, utts, keep_audio)
    encoder.eval()
    out = []
    for u in tqdm(utts, desc=f"encode {split}", mininterval=5, leave=False):
        audio = load_audio(corpus, u)
        x = motion_x(load_motion(corpus, u))
        feats = encoder.features_25(torch.from_numpy(audio)[None])[0].numpy()
        n = min(len(x), len(feats))
        out.append(Utterance(u["id"], u["speaker"], feats[:n].astype(np.float32), x[:n], audio if keep_audio else None))
    if key is not None:
        key.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            key,
            ids=np.array([o.id for o in out]),
            speakers=np.array([o.speaker for o in out]),
            lengths=np.array([len(o.x) for o in out]),
            feats=np.concatenate([o.feats for o in out]).astype(np.float16),
            x=np.concatenate([o.x for o in out]),
        )
    return out


def _load_cache(path: Path, corpus: Path, utts: list[dict], keep_audio: bool) -> list[Utterance]:
    with np.load(path, allow_pickle=False) as z:
        ends = np.cumsum(z["lengths"])
        starts = ends - z["lengths"]
        feats, x = z["feats"].astype(np.float32), z["x"]
        out = [
            Utterance(str(i), str(s), feats[a:b], x[a:b]) for i, s, a, b in zip(z["ids"], z["speakers"], starts, ends)
        ]
    if keep_audio:
        by_id = {u["id"]: u for u in utts}
        for o in out:
            o.audio = load_audio(corpus, by_id[o.id])
    return out


def all_frames(data: list[Utterance]) -> np.ndarray:
    return np.concatenate([u.x for u in data]).reshape(-1, N_PARAMS)


def random_batch(data: list[Utterance], rng: np.random.Generator, batch: int, window: int) -> dict:
    """`batch` random windows of `window` frames, utterances drawn in proportion to length.

    Utterances shorter than the window are skipped (no padding, so ALiBi never
    sees padded frames); if none is long enough the window shrinks to the
    shortest drawn utterance.
    """
    lengths = np.array([len(u.x) for u in data])
    ok = lengths >= window
    if ok.any():
        p = np.where(ok, lengths, 0) / lengths[ok].sum()
        idx = rng.choice(len(data), size=batch, p=p)
        n = window
    else:
        idx = rng.integers(0, len(data), batch)
        n = int(lengths[idx].min())
    feats, xs, starts = [], [], []
    for i in idx:
        s = int(rng.integers(0, len(data[i].x) - n + 1))
        feats.append(data[i].feats[s : s + n])
        xs.append(data[i].x[s : s + n])
        starts.append(s)
    return {
        "feats": torch.from_numpy(np.stack(feats)),
        "x": torch.from_numpy(np.stack(xs)),
        "idx": idx,
        "ids": [data[i].id for i in idx],
        "starts": np.array(starts),
        "n": n,
    }


def load_split_audio(corpus: Path, split: str, limit: int | None = None) -> list[Utterance]:
    """Motion and 16 kHz audio of one split, no features: for a jointly trained encoder
    (`--train-encoder`), which computes them on the fly from each window's audio.
    `feats` is a (T, 0) placeholder so `random_batch` draws exactly as in the frozen path."""
    from training.speech.encoder import HOP_25

    out = []
    for u in tqdm(utterances(corpus, split, limit), desc=f"load {split}", mininterval=5, leave=False):
        audio = load_audio(corpus, u)
        x = motion_x(load_motion(corpus, u))
        n = min(len(x), len(audio) // HOP_25)
        out.append(
            Utterance(
                u["id"],
                u["speaker"],
                np.zeros((n, 0), np.float32),
                x[:n],
                np.ascontiguousarray(audio[: n * HOP_25], dtype=np.float32),
            )
        )
    return out


def audio_batch(data: list[Utterance], rng: np.random.Generator, batch: int, window: int) -> dict:
    """`random_batch` plus "audio" (B, n * 640): the speech under each motion window."""
    from training.speech.encoder import HOP_25

    b = random_batch(data, rng, batch, window)
    n = b["n"]
    b["audio"] = torch.from_numpy(
        np.stack([data[i].audio[s * HOP_25 : (s + n) * HOP_25] for i, s in zip(b["idx"], b["starts"])])
    )
    return b
