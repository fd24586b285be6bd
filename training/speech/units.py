"""Speech units U: HuBERT-style discrete units at 50 Hz (k-means over one encoder layer).

Computed from audio alone, so any corpus (imported ones too) gets units:

    thunder-train units fit --encoder RUN --corpus DIR --out UNITS_DIR [--n-units 100] [--layer -2]

writes UNITS_DIR/units.npz (centroids, layer, encoder) and provenance.json.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from training.speech.data import load_audio, utterances
from training.speech.encoder import SpeechEncoder, load_encoder
from training.speech.runs import corpus_data, provenance, write_json


@torch.no_grad()
def layer_features(encoder: SpeechEncoder, audio: np.ndarray, layer: int) -> np.ndarray:
    """(N,) audio -> (N // 320, C) float32 features of one encoder layer at 50 Hz."""
    return encoder.hidden_50(torch.from_numpy(np.asarray(audio, np.float32))[None])[layer][0].numpy()


class Units:
    """Fitted k-means units: `assign(features)` and `from_audio(encoder, audio)`."""

    def __init__(self, centroids: np.ndarray, layer: int):
        self.centroids = np.asarray(centroids, np.float32)
        self.layer = int(layer)
        self._sq = (self.centroids ** 2).sum(1)

    @property
    def n_units(self) -> int:
        return len(self.centroids)

    def assign(self, features: np.ndarray) -> np.ndarray:
        d = self._sq[None, :] - 2.0 * features @ self.centroids.T
        return d.argmin(axis=1).astype(np.int64)

    def from_audio(self, encoder: SpeechEncoder, audio: np.ndarray) -> np.ndarray:
        return self.assign(layer_features(encoder, audio, self.layer))

    def save(self, folder: str | Path, **meta) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "units.npz", centroids=self.centroids, layer=self.layer,
                 **{k: np.asarray(str(v)) for k, v in meta.items()})
        return folder / "units.npz"

    @classmethod
    def load(cls, path: str | Path) -> "Units":
        path = Path(path)
        path = path / "units.npz" if path.is_dir() else path
        if not path.exists():
            raise FileNotFoundError(f"no units at {path} (run `thunder-train units fit`)")
        with np.load(path) as z:
            return cls(z["centroids"], int(z["layer"]))


def fit_units(encoder: SpeechEncoder, corpus, n_units: int = 100, layer: int = -2, max_frames: int = 300_000,
              seed: int = 0, limit: int | None = None) -> Units:
    """k-means (scikit-learn MiniBatchKMeans) on up to max_frames training frames of `layer`."""
    from sklearn.cluster import MiniBatchKMeans
    utts = utterances(corpus, "train", limit=limit)
    rng = np.random.default_rng(seed)
    rng.shuffle(utts)
    feats, total = [], 0
    for utt in tqdm(utts, desc="unit features", mininterval=5):
        f = layer_features(encoder, load_audio(corpus, utt), layer)
        feats.append(f)
        total += len(f)
        if total >= max_frames:
            break
    x = np.concatenate(feats)[:max_frames]
    if len(x) < n_units:
        raise ValueError(f"only {len(x)} frames for {n_units} units: use fewer units or more data")
    km = MiniBatchKMeans(n_clusters=n_units, batch_size=4096, n_init=3, random_state=seed, max_iter=100)
    km.fit(x)
    return Units(km.cluster_centers_, layer)


def fit_cmd(args) -> int:
    torch.set_num_threads(args.threads)
    encoder = load_encoder(args.encoder)
    units = fit_units(encoder, args.corpus, args.n_units, args.layer, args.max_frames, args.seed, args.limit)
    path = units.save(args.out, encoder=args.encoder)
    write_json(Path(args.out) / "provenance.json",
               provenance(args.seed, corpus_data(args.corpus), encoder=str(args.encoder), n_units=args.n_units,
                          layer=args.layer, max_frames=args.max_frames))
    print(f"wrote {path}: {units.n_units} units on layer {units.layer}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("units", help="speech units: k-means over speech-encoder features (50 Hz)")
    sub = p.add_subparsers(dest="units_command", required=True)
    f = sub.add_parser("fit", help="fit k-means units on a corpus's training split")
    f.add_argument("--encoder", "--audio-encoder", dest="encoder", required=True, type=Path,
                   help="encoder run folder / .pt / transformers folder")
    f.add_argument("--corpus", required=True, type=Path)
    f.add_argument("--out", required=True, type=Path)
    f.add_argument("--n-units", type=int, default=100)
    f.add_argument("--layer", type=int, default=-2, help="encoder layer (python index into its layers)")
    f.add_argument("--max-frames", type=int, default=300_000)
    f.add_argument("--limit", type=int, default=None, help="use only the first N training utterances")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--threads", type=int, default=1)
    f.set_defaults(func=fit_cmd)
