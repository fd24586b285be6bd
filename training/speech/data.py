"""Corpus access for the speech and M2S trainers (layout: docs/corpus.md).

Reads `manifest.json` and the per-utterance wav / motion files directly; that
layout is the contract, so these readers work on any corpus that follows it
(built, imported or a test's tiny one).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from backend.contracts import FPS, SAMPLE_RATE
from training.corpus.io import motion_draws
from training.corpus.phones import INVENTORY, SIL

PHONE_INDEX = {p: i for i, p in enumerate(INVENTORY)}


def read_manifest(corpus: str | Path) -> dict:
    path = Path(corpus) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{corpus} is not a corpus folder (no manifest.json)")
    manifest = json.loads(path.read_text())
    if manifest.get("sample_rate", SAMPLE_RATE) != SAMPLE_RATE or manifest.get("fps", FPS) != FPS:
        raise ValueError(
            f"{corpus}: expected {SAMPLE_RATE} Hz / {FPS} fps, got "
            f"{manifest.get('sample_rate')} Hz / {manifest.get('fps')} fps"
        )
    return manifest


def utterances(corpus: str | Path, split: str | None = None, limit: int | None = None) -> list[dict]:
    """Manifest entries of one split ('train' / 'val' / 'test'), or all; `limit` keeps the first few."""
    entries = read_manifest(corpus)["utterances"]
    if split is not None:
        entries = [u for u in entries if u["split"] == split]
    if not entries:
        raise ValueError(f"{corpus}: no utterances in split {split!r}")
    return entries[:limit] if limit else entries


def spread_over_speakers(entries: list[dict], limit: int | None) -> list[dict]:
    """`limit` entries taken round-robin over speakers (manifest order within each), so a
    short evaluation covers every speaker instead of the first one or two."""
    if not limit or limit >= len(entries):
        return list(entries)
    by_speaker: dict[str, list[dict]] = {}
    for e in entries:
        by_speaker.setdefault(e["speaker"], []).append(e)
    queues, picked = list(by_speaker.values()), []
    for i in range(max(len(q) for q in queues)):
        picked += [q[i] for q in queues if i < len(q)]
        if len(picked) >= limit:
            break
    return picked[:limit]


def load_audio(corpus: str | Path, utt: dict) -> np.ndarray:
    audio, sr = sf.read(Path(corpus) / utt["wav"], dtype="float32", always_2d=True)
    if sr != SAMPLE_RATE:
        raise ValueError(f"{utt['wav']}: {sr} Hz, expected {SAMPLE_RATE}")
    return audio.mean(axis=1)


def load_motion(corpus: str | Path, utt: dict, draw: int = 0) -> dict:
    """An utterance's motion npz: its first draw, or draw `draw` of a redrawn corpus."""
    with np.load(Path(corpus) / motion_draws(utt)[draw], allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_motion_draws(corpus: str | Path, utt: dict) -> list[dict]:
    """Every motion draw of an utterance (one for a corpus that was not redrawn)."""
    return [load_motion(corpus, utt, d) for d in range(len(motion_draws(utt)))]


def phone_labels(motion: dict, n_frames: int, rate: float = 50.0, time_scale: float = 1.0) -> np.ndarray:
    """Frame-level phone indices (n_frames,) at `rate` Hz: the phone covering each frame's centre.

    time_scale stretches the phone times (tempo augmentation: audio made r times
    longer has time_scale = r).
    """
    centres = (np.arange(n_frames) + 0.5) / rate
    starts = np.asarray(motion["phones_start"], dtype=np.float64) * time_scale
    ends = np.asarray(motion["phones_end"], dtype=np.float64) * time_scale
    ids = np.array([PHONE_INDEX.get(str(p), PHONE_INDEX[SIL]) for p in motion["phones"]], dtype=np.int64)
    labels = np.full(n_frames, PHONE_INDEX[SIL], dtype=np.int64)
    k = np.searchsorted(starts, centres, side="right") - 1
    inside = (k >= 0) & (centres < ends[np.clip(k, 0, None)])
    labels[inside] = ids[k[inside]]
    return labels
