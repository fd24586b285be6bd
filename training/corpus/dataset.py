"""Read a corpus (built or imported): `load_corpus(DIR)`; see docs/corpus.md.

corpus = load_corpus("/work/data/corpus-small")
for utt in corpus.split("train"):
    audio = corpus.audio(utt)          # float32 (N,) at 16 kHz
    m = corpus.motion(utt)             # exp (T,50), jaw (T,3), phones, words, ...
    m2 = corpus.motion(utt, draw=1)    # another draw, when the corpus was redrawn (n_draws)
    x = corpus.params(utt)             # (T, 53) = [exp | jaw]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from backend.contracts import FPS, N_PARAMS, SAMPLE_RATE

from .io import motion_draws

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Corpus:
    root: Path
    manifest: dict

    @property
    def utterances(self) -> list[dict]:
        return self.manifest["utterances"]

    @property
    def speakers(self) -> dict:
        return self.manifest["speakers"]

    @property
    def head_id(self) -> str:
        return self.manifest.get("head_id", "")

    def split(self, name: str) -> list[dict]:
        if name not in SPLIT_NAMES:
            raise ValueError(f"unknown split {name!r}; one of {SPLIT_NAMES}")
        return [u for u in self.utterances if u["split"] == name]

    def get(self, utt_id: str) -> dict:
        for u in self.utterances:
            if u["id"] == utt_id:
                return u
        raise KeyError(f"no utterance {utt_id!r} in {self.root}")

    def _entry(self, utt) -> dict:
        return self.get(utt) if isinstance(utt, str) else utt

    def audio(self, utt) -> np.ndarray:
        """Mono float32 at 16 kHz (resampled if a file is not)."""
        u = self._entry(utt)
        audio, sr = sf.read(str(self.root / u["wav"]), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if sr != SAMPLE_RATE:
            audio = soxr.resample(audio, sr, SAMPLE_RATE).astype(np.float32)
        return audio

    def n_draws(self, utt) -> int:
        """How many motion draws the utterance has (`corpus redraw`; 1 otherwise)."""
        return len(motion_draws(self._entry(utt)))

    def motion(self, utt, draw: int = 0) -> dict:
        """The npz (of draw `draw`) as a dict of arrays, strings as Python str, cut to n_frames."""
        u = self._entry(utt)
        with np.load(self.root / motion_draws(u)[draw], allow_pickle=False) as z:
            m = {k: z[k] for k in z.files}
        for k in ("speaker", "source", "text"):
            if k in m:
                m[k] = str(m[k])
        n = u["n_frames"]
        m["exp"], m["jaw"] = m["exp"][:n], m["jaw"][:n]
        return m

    def params(self, utt) -> np.ndarray:
        """(T, 53) float32 = [exp | jaw], the model's parameter layout."""
        m = self.motion(utt)
        return np.concatenate([m["exp"], m["jaw"]], axis=1).astype(np.float32)

    def hours(self, split: str | None = None) -> float:
        us = self.utterances if split is None else self.split(split)
        return sum(u["duration"] for u in us) / 3600


def load_corpus(root: str | Path) -> Corpus:
    root = Path(root)
    path = root / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: build a corpus with `thunder-train corpus build --out {root}` "
            f"or import one with `thunder-train corpus import SRC --out {root}`"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("fps") != FPS or manifest.get("sample_rate") != SAMPLE_RATE:
        raise ValueError(
            f"{path}: expected fps {FPS} and sample_rate {SAMPLE_RATE}, "
            f"got {manifest.get('fps')} / {manifest.get('sample_rate')}"
        )
    bad = [u["id"] for u in manifest["utterances"] if u.get("split") not in SPLIT_NAMES]
    if bad:
        raise ValueError(f"{path}: utterances without a train/val/test split, e.g. {bad[:3]}")
    assert N_PARAMS == 53
    return Corpus(root, manifest)
