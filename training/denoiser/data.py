"""Denoiser training data: per-utterance speech features (frozen encoder, computed
once and cached) paired with motion x = [psi | jaw], cut into random windows.

A redrawn corpus (`corpus redraw`) has several motion draws per utterance (same
lips, other upper faces): every batch item takes one of its utterance's draws at
random, so the model sees the many-to-many mapping. With one draw per utterance
the batches are exactly those of a corpus without draws."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from backend.contracts import N_PARAMS
from training.speech.data import load_audio, load_motion_draws, utterances


@dataclass
class Utterance:
    id: str
    speaker: str
    feats: np.ndarray  # (T, A) float32 speech features at 25 Hz
    x: np.ndarray  # (T, 53) float32 [psi | jaw], the first draw
    audio: np.ndarray | None = None  # 16 kHz, kept when the M2S loss needs the speech
    draws: tuple = ()  # every draw (T, 53) when there are several, x first; () for one

    @property
    def all_draws(self) -> tuple:
        return self.draws or (self.x,)


def motion_x(motion: dict) -> np.ndarray:
    return np.concatenate([motion["exp"], motion["jaw"]], axis=1).astype(np.float32)


def draws_x(corpus: Path, utt: dict, n: int | None = None) -> list[np.ndarray]:
    """Every motion draw of an utterance as x (T, 53), all cut to the shortest (and to n)."""
    xs = [motion_x(m) for m in load_motion_draws(corpus, utt)]
    n = min([len(x) for x in xs] + ([n] if n is not None else []))
    return [x[:n] for x in xs]


def _utterance(uid: str, speaker: str, feats: np.ndarray, xs: list, audio=None) -> Utterance:
    return Utterance(uid, speaker, feats, xs[0], audio, tuple(xs) if len(xs) > 1 else ())


@torch.no_grad()
def encode_split(
    corpus: Path, encoder, split: str, cache: Path | None = None, limit: int | None = None, keep_audio: bool = False
) -> list[Utterance]:
    """Features and motion of one split; cached by (corpus manifest, encoder weights)."""
    utts = utterances(corpus, split, limit)
    key = None
    if cache is not None:
        h = hashlib.sha256((Path(corpus) / "manifest.json").read_bytes())
        for name, p in encoder.state_dict().items():
            if not name.startswith("phone_head."):  # unused for features (and random for pretrained encoders)
                h.update(p.detach().cpu().numpy().tobytes()[:4096])
        key = Path(cache) / f"{split}-{limit or 'all'}-{h.hexdigest()[:16]}.npz"
        if key.exists():
            return _load_cache(key, corpus, utts, keep_audio)
    encoder.eval()
    out = []
    for u in tqdm(utts, desc=f"encode {split}", mininterval=5, leave=False):
        audio = load_audio(corpus, u)
        feats = encoder.features_25(torch.from_numpy(audio)[None])[0].numpy()
        xs = draws_x(corpus, u, len(feats))
        n = len(xs[0])
        out.append(_utterance(u["id"], u["speaker"], feats[:n].astype(np.float32), xs, audio if keep_audio else None))
    if key is not None:
        key.parent.mkdir(parents=True, exist_ok=True)
        extra = [d for o in out for d in o.all_draws[1:]]
        np.savez(
            key,
            ids=np.array([o.id for o in out]),
            speakers=np.array([o.speaker for o in out]),
            lengths=np.array([len(o.x) for o in out]),
            feats=np.concatenate([o.feats for o in out]).astype(np.float16),
            x=np.concatenate([o.x for o in out]),
            n_draws=np.array([len(o.all_draws) for o in out]),
            x_extra=np.concatenate(extra) if extra else np.zeros((0, N_PARAMS), np.float32),
        )
    return out


def _load_cache(path: Path, corpus: Path, utts: list[dict], keep_audio: bool) -> list[Utterance]:
    with np.load(path, allow_pickle=False) as z:
        lengths = z["lengths"]
        ends = np.cumsum(lengths)
        starts = ends - lengths
        feats, x = z["feats"].astype(np.float32), z["x"]
        n_draws = z["n_draws"] if "n_draws" in z.files else np.ones(len(lengths), int)  # caches from before draws
        extra = z["x_extra"] if "x_extra" in z.files else None
        out, at = [], 0
        for i, s, a, b, k in zip(z["ids"], z["speakers"], starts, ends, n_draws):
            xs = [x[a:b]]
            for _ in range(int(k) - 1):
                xs.append(extra[at : at + b - a])
                at += b - a
            out.append(_utterance(str(i), str(s), feats[a:b], xs))
    if keep_audio:
        by_id = {u["id"]: u for u in utts}
        for o in out:
            o.audio = load_audio(corpus, by_id[o.id])
    return out


def all_frames(data: list[Utterance]) -> np.ndarray:
    """Every frame of every draw (the normalisation statistics see them all)."""
    return np.concatenate([x for u in data for x in u.all_draws]).reshape(-1, N_PARAMS)


def random_batch(data: list[Utterance], rng: np.random.Generator, batch: int, window: int) -> dict:
    """`batch` random windows of `window` frames, utterances drawn in proportion to length,
    each window from one of its utterance's draws at random ("draws": which).

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
    feats, xs, starts, draws = [], [], [], []
    for i in idx:
        u = data[i]
        s = int(rng.integers(0, len(u.x) - n + 1))
        d = int(rng.integers(0, len(u.draws))) if u.draws else 0  # one draw: no random number, batches as before
        feats.append(u.feats[s : s + n])
        xs.append(u.all_draws[d][s : s + n])
        starts.append(s)
        draws.append(d)
    return {
        "feats": torch.from_numpy(np.stack(feats)),
        "x": torch.from_numpy(np.stack(xs)),
        "idx": idx,
        "ids": [data[i].id for i in idx],
        "starts": np.array(starts),
        "draws": np.array(draws),
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
        xs = draws_x(corpus, u, len(audio) // HOP_25)
        n = len(xs[0])
        feats = np.zeros((n, 0), np.float32)
        out.append(_utterance(u["id"], u["speaker"], feats, xs, np.ascontiguousarray(audio[: n * HOP_25], np.float32)))
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
