"""Speech units U: HuBERT-style discrete units at 50 Hz (k-means over one encoder layer).

Computed from audio alone, so any corpus (imported ones too) gets units:

    thunder-train units fit --encoder RUN --corpus DIR --out UNITS_DIR [--config full|small] [--n-units N]

writes UNITS_DIR/units.npz (centroids, layer, encoder) and provenance.json; the
number of units, the layer and the data come from the config's `units` section.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from training.speech.data import load_audio, utterances
from training.speech.encoder import SpeechEncoder, load_encoder
from training.config import add_config_options, add_run_options, from_args
from training.provenance import corpus_data, provenance, write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """The `units` section of a training config (training/configs/*.json)."""

    n_units: int
    layer: int  # encoder layer (python index into its layers)
    max_frames: int  # k-means sees at most this many training frames
    limit: int | None  # only the first N training utterances


@torch.no_grad()
def layer_features(encoder: SpeechEncoder, audio: np.ndarray, layer: int) -> np.ndarray:
    """(N,) audio -> (N // 320, C) float32 features of one encoder layer at 50 Hz."""
    return encoder.hidden_50(torch.from_numpy(np.asarray(audio, np.float32))[None])[layer][0].numpy()


class Units:
    """Fitted k-means units: `assign(features)` and `from_audio(encoder, audio)`."""

    def __init__(self, centroids: np.ndarray, layer: int):
        self.centroids = np.asarray(centroids, np.float32)
        self.layer = int(layer)
        self._sq = (self.centroids**2).sum(1)

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
        np.savez(
            folder / "units.npz",
            centroids=self.centroids,
            layer=self.layer,
            **{k: np.asarray(str(v)) for k, v in meta.items()},
        )
        return folder / "units.npz"

    @classmethod
    def load(cls, path: str | Path) -> "Units":
        path = Path(path)
        path = path / "units.npz" if path.is_dir() else path
        if not path.exists():
            raise FileNotFoundError(f"no units at {path} (run `thunder-train units fit`)")
        with np.load(path) as z:
            return cls(z["centroids"], int(z["layer"]))


def fit_units(encoder: SpeechEncoder, corpus, cfg: TrainConfig, seed: int = 0) -> Units:
    """k-means (scikit-learn MiniBatchKMeans) on up to cfg.max_frames training frames of cfg.layer."""
    from sklearn.cluster import MiniBatchKMeans

    n_units, layer, max_frames = cfg.n_units, cfg.layer, cfg.max_frames
    utts = utterances(corpus, "train", limit=cfg.limit)
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


def train(
    out: Path, cfg: TrainConfig, *, encoder: Path, corpus: Path, seed: int = 0, origin: dict | None = None
) -> Units:
    """Fit units on `encoder`'s features into folder `out` (units.npz, provenance.json)."""
    units = fit_units(load_encoder(encoder), corpus, cfg, seed)
    path = units.save(out, encoder=encoder)
    write_json(
        Path(out) / "provenance.json",
        provenance(
            seed,
            corpus_data(corpus),
            encoder=str(encoder),
            n_units=cfg.n_units,
            layer=cfg.layer,
            max_frames=cfg.max_frames,
            training_config=origin,
        ),
    )
    log.info("wrote %s: %d units on layer %d", path, units.n_units, units.layer)
    return units


def fit_cmd(args) -> int:
    torch.set_num_threads(args.threads)
    cfg, origin = from_args(TrainConfig, "units", args)
    train(args.out, cfg, encoder=args.encoder, corpus=args.corpus, seed=args.seed, origin=origin)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("units", help="speech units: k-means over speech-encoder features (50 Hz)")
    sub = p.add_subparsers(dest="units_command", required=True)
    f = sub.add_parser("fit", help="fit k-means units on a corpus's training split")
    f.add_argument(
        "--encoder",
        "--audio-encoder",
        dest="encoder",
        required=True,
        type=Path,
        help="encoder run folder / .pt / transformers folder",
    )
    f.add_argument("--corpus", required=True, type=Path)
    f.add_argument("--out", required=True, type=Path)
    add_config_options(f)
    # hyperparameters: default None = the --config file's `units` section
    f.add_argument("--n-units", type=int, default=None)
    f.add_argument("--layer", type=int, default=None, help="encoder layer (python index into its layers)")
    f.add_argument("--max-frames", type=int, default=None)
    f.add_argument("--limit", type=int, default=None, help="use only the first N training utterances")
    add_run_options(f, stop_at=False)
    f.set_defaults(func=fit_cmd)
