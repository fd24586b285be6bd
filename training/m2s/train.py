"""Train M2S: L = 10 * L1(mel) + CE(units) on windows of 125 frames, Adam, best by validation loss.

    thunder-train m2s train --corpus DIR --head HEAD --encoder ENC_RUN --units UNITS_DIR \
        --variant mouth2s --out RUN [--config full|small] [--max-minutes M]

Resumes from RUN/last.pt; RUN/best.pt is the selected model (`load_m2s(RUN)`).
Sizes and schedule: the config's `m2s` section (training/configs/*.json).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.m2s.data import cache_key, load_split
from training.m2s.model import M2SConfig, M2SFromParams
from training.speech.data import read_manifest
from training.loop import fit, load_checkpoint
from training.provenance import corpus_data, provenance

log = logging.getLogger(__name__)
MEL_WEIGHT = 10.0


@dataclass(frozen=True)
class TrainConfig:
    """The `m2s` section of a training config (training/configs/*.json)."""

    dim: int  # conformer width
    layers: int  # conformer blocks
    heads: int | None  # None: dim // 64 (at least 1)
    epochs: float  # sets steps when steps is 0
    steps: int
    batch: int
    window: int  # frames at 25 fps
    lr: float
    warmup: int
    val_every: int  # 0: once an epoch
    val_utts: int
    limit: int | None  # training utterances (None: all)
    max_minutes: float  # 0: no deadline


def m2s_loss(model, batch):
    mel, logits = model(batch["exp"], batch["jaw"], batch["speaker"])
    m100 = batch["mask"].repeat_interleave(4, dim=1)
    m50 = batch["mask"].repeat_interleave(2, dim=1)
    l1 = (mel - batch["mel"]).abs().mean(-1)[m100].mean()
    ce = F.cross_entropy(logits[m50], batch["units"][m50])
    acc = (logits.argmax(-1)[m50] == batch["units"][m50]).float().mean()
    loss = MEL_WEIGHT * l1 + ce
    return loss, {"loss": loss.item(), "mel_l1": l1.item(), "ce": ce.item(), "unit_acc": acc.item()}


@torch.no_grad()
def validate(model, split, window: int, batch: int = 16) -> dict:
    items = split.windows(window)
    totals, count = {}, 0
    for k in range(0, len(items), batch):
        chunk = items[k : k + batch]
        _, metrics = m2s_loss(model, split.batch(chunk, window))
        n = sum(length for _, _, length in chunk)
        for name, v in metrics.items():
            totals[name] = totals.get(name, 0.0) + v * n
        count += n
    return {name: v / count for name, v in totals.items()}


@torch.no_grad()
def set_statistics(model: M2SFromParams, split, rng, n_windows: int = 64, window: int = 125) -> None:
    """Input standardisation and the mel head's starting offset from training data."""
    feats = []
    for _ in range(max(1, n_windows // 16)):
        b = split.random_batch(rng, 16, window)
        x = model.raw_inputs(b["exp"], b["jaw"])[b["mask"]]
        feats.append(x)
    x = torch.cat(feats)
    std = x.std(0)
    model.in_mean.copy_(x.mean(0))
    model.in_std.copy_(std.clamp_min(max(float(std.mean()) * 0.1, 1e-6)))
    model.m2s.mel_mean.copy_(torch.from_numpy(split.mel.mean(0)))


def head_region(head_dir):
    from training.head import load_head

    head = load_head(head_dir)
    return head, head.regions["mouth"]


def load_m2s(run, head_dir=None) -> tuple[M2SFromParams, dict]:
    """RUN folder / .pt -> (model in eval mode, checkpoint dict). Refuses a head other than the trained one."""
    path = Path(run)
    path = path / "best.pt" if path.is_dir() else path
    ckpt = load_checkpoint(path)
    if ckpt is None:
        raise FileNotFoundError(f"no M2S checkpoint at {path}")
    cfg = M2SConfig.from_dict(ckpt["config"]["model"])
    head_dir = head_dir or ckpt["config"].get("head")
    region = None
    if cfg.variant in ("mouth2s", "face2s"):
        head, region = head_region(head_dir)
        if head.head_id != ckpt["config"]["head_id"]:
            raise ValueError(
                f"{path} was trained on head {ckpt['config']['head_id'][:12]}, "
                f"but {head_dir} is head {head.head_id[:12]}"
            )
    model = M2SFromParams(cfg, head_dir, region)
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def train(
    out: Path,
    cfg: TrainConfig,
    *,
    corpus: Path,
    head: Path | None,
    encoder: Path,
    units: Path,
    variant: str = "mouth2s",
    cache: Path | None = None,
    seed: int = 0,
    stop_at: int = 0,
    origin: dict | None = None,
) -> dict:
    """Train one variant into run folder `out` (resumes from out/last.pt). `cache`: the
    target cache (default out/cache); `origin`: where cfg came from, for provenance.json."""
    torch.manual_seed(seed)  # the model's initial weights too: the same seed gives the same run
    from training.speech.encoder import load_encoder
    from training.speech.units import Units

    speech, unit_set = load_encoder(encoder), Units.load(units)
    key = cache_key(encoder, units)
    cache = Path(cache or Path(out) / "cache")
    train_split = load_split(cache, corpus, "train", speech, unit_set, key, cfg.limit)
    val_split = load_split(cache, corpus, "val", speech, unit_set, key, cfg.val_utts)
    size = {"dim": cfg.dim, "layers": cfg.layers, "heads": cfg.heads or max(1, cfg.dim // 64)}
    model_cfg = M2SConfig(variant=variant, n_units=unit_set.n_units, **size)
    head_id, region = None, None
    if variant in ("mouth2s", "face2s"):
        head_model, region = head_region(head)
        head_id = head_model.head_id
        corpus_head = read_manifest(corpus).get("head_id", "")
        if len(corpus_head) == 64 and corpus_head != head_id:
            raise ValueError(
                f"{corpus} was animated on head {corpus_head[:12]}, but --head {head} is "
                f"head {head_id[:12]}: pass the corpus's head"
            )
    model = M2SFromParams(model_cfg, head, region)
    set_statistics(model, train_split, np.random.default_rng(seed), window=cfg.window)
    frames = int(train_split.offsets[-1])
    steps = cfg.steps or max(1, int(cfg.epochs * frames / (cfg.batch * cfg.window)))
    val_every = cfg.val_every or max(1, steps // cfg.epochs)
    config = {
        "model": model_cfg.to_dict(),
        "head": str(Path(head).resolve()) if head else None,
        "head_id": head_id,
        "encoder": key["encoder"],
        "units": str(Path(units).resolve()),
        "window": cfg.window,
        "batch": cfg.batch,
        "cache": str(cache.resolve()),
    }
    prov = provenance(
        seed,
        {**corpus_data(corpus), **key},
        config=config,
        steps=steps,
        train_frames=frames,
        params=sum(p.numel() for p in model.m2s.parameters()),
        training_config=origin,
    )
    log.info(
        "m2s %s: %.2f M params, %.2f h, %d steps", model_cfg.variant, prov["params"] / 1e6, frames / 25 / 3600, steps
    )
    return fit(
        model,
        out,
        next_batch=lambda rng: train_split.random_batch(rng, cfg.batch, cfg.window),
        loss_fn=m2s_loss,
        validate=lambda m: validate(m, val_split, cfg.window),
        steps=steps,
        val_every=val_every,
        lr=cfg.lr,
        warmup=cfg.warmup,
        seed=seed,
        config=config,
        prov=prov,
        max_minutes=cfg.max_minutes,
        stop_at=stop_at,
        desc=f"m2s {model_cfg.variant}",
    )
