"""Train M2S: L = 10 * L1(mel) + CE(units) on windows of 125 frames, Adam, best by validation loss.

    thunder-train m2s train --corpus DIR --head HEAD --encoder ENC_RUN --units UNITS_DIR \
        --variant mouth2s --out RUN [--max-minutes M] [--small]

Resumes from RUN/last.pt; RUN/best.pt is the selected model (`load_m2s(RUN)`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.m2s.data import cache_key, load_split
from training.m2s.model import M2SConfig, M2SFromParams
from training.speech.data import read_manifest
from training.speech.runs import corpus_data, fit, load_checkpoint, provenance

SMALL = {"dim": 64, "layers": 1, "heads": 2}
MEL_WEIGHT = 10.0


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
        chunk = items[k:k + batch]
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
            raise ValueError(f"{path} was trained on head {ckpt['config']['head_id'][:12]}, "
                             f"but {head_dir} is head {head.head_id[:12]}")
    model = M2SFromParams(cfg, head_dir, region)
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def train(args) -> int:
    from training.speech.encoder import load_encoder
    from training.speech.units import Units
    torch.set_num_threads(args.threads)
    encoder, units = load_encoder(args.encoder), Units.load(args.units)
    key = cache_key(args.encoder, args.units)
    cache = Path(args.cache or Path(args.out) / "cache")
    limit = 8 if args.small else None
    train_split = load_split(cache, args.corpus, "train", encoder, units, key, limit)
    val_split = load_split(cache, args.corpus, "val", encoder, units, key, 4 if args.small else args.val_utts)
    size = SMALL if args.small else {"dim": args.dim, "layers": args.layers, "heads": max(1, args.dim // 64)}
    cfg = M2SConfig(variant=args.variant, n_units=units.n_units, **size)
    head_id, region = None, None
    if args.variant in ("mouth2s", "face2s"):
        head, region = head_region(args.head)
        head_id = head.head_id
        corpus_head = read_manifest(args.corpus).get("head_id", "")
        if len(corpus_head) == 64 and corpus_head != head_id:
            raise ValueError(f"{args.corpus} was animated on head {corpus_head[:12]}, but --head {args.head} is "
                             f"head {head_id[:12]}: pass the corpus's head")
    model = M2SFromParams(cfg, args.head, region)
    window = 50 if args.small else args.window
    set_statistics(model, train_split, np.random.default_rng(args.seed), window=window)
    frames = int(train_split.offsets[-1])
    steps = args.steps or (30 if args.small else max(1, int(args.epochs * frames / (args.batch * window))))
    val_every = args.val_every or (15 if args.small else max(1, steps // args.epochs))
    config = {"model": cfg.to_dict(), "head": str(Path(args.head).resolve()) if args.head else None,
              "head_id": head_id, "encoder": key["encoder"], "units": str(Path(args.units).resolve()),
              "window": window, "batch": args.batch, "cache": str(cache.resolve())}
    prov = provenance(args.seed, {**corpus_data(args.corpus), **key}, config=config, steps=steps,
                      train_frames=frames, params=sum(p.numel() for p in model.m2s.parameters()))
    print(f"m2s {cfg.variant}: {prov['params'] / 1e6:.2f} M params, {frames / 25 / 3600:.2f} h, {steps} steps")
    result = fit(model, args.out, next_batch=lambda rng: train_split.random_batch(rng, args.batch, window),
                 loss_fn=m2s_loss, validate=lambda m: validate(m, val_split, window), steps=steps,
                 val_every=val_every, lr=args.lr, seed=args.seed, config=config, prov=prov,
                 max_minutes=args.max_minutes, stop_at=args.stop_at,
                 warmup=10 if args.small else 500, desc=f"m2s {cfg.variant}")
    print(result)
    return 0
