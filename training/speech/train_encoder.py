"""Train the speech encoder on frame-level phones (50 Hz frame cross-entropy), with augmentation.

    thunder-train encoder train --corpus DIR --out RUN [--kind logmel|wav2vec2] [--max-minutes M]
    thunder-train encoder eval  --encoder RUN --corpus DIR [--split test]
    thunder-train encoder export --encoder RUN --out audio_encoder.onnx

Running `train` again with the same --out resumes from RUN/last.pt; RUN/best.pt is
the checkpoint with the lowest validation loss (what `load_encoder(RUN)` loads).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.speech.augment import augment
from training.corpus.phones import INVENTORY
from training.speech.data import load_audio, load_motion, phone_labels, utterances
from training.speech.encoder import HOP_50, EncoderConfig, SpeechEncoder, load_encoder
from training.speech.runs import corpus_data, fit, provenance, write_json

IGNORE = -100
SMALL = {"hidden": 64, "layers": 2, "heads": 2, "ff": 128, "conv_dim": 64}


class PhoneBatches:
    """Random crops of `seconds` from training utterances, augmented, with 50 Hz phone labels."""

    def __init__(self, corpus, utts, batch: int, seconds: float, use_augment: bool = True):
        self.corpus, self.utts, self.batch, self.use_augment = corpus, utts, batch, use_augment
        self.n = int(seconds * 50) * HOP_50
        self.motion = {}

    def item(self, utt, rng):
        audio = load_audio(self.corpus, utt)
        motion = self.motion.setdefault(utt["id"], load_motion(self.corpus, utt))
        scale = 1.0
        if self.use_augment:
            audio, scale = augment(audio, rng)
        labels = phone_labels(motion, len(audio) // HOP_50, time_scale=scale)
        if len(audio) > self.n:
            start = int(rng.integers(0, len(audio) // HOP_50 - self.n // HOP_50 + 1))
            audio, labels = audio[start * HOP_50:start * HOP_50 + self.n], labels[start:start + self.n // HOP_50]
        x = np.zeros(self.n, np.float32)
        y = np.full(self.n // HOP_50, IGNORE, np.int64)
        x[:len(audio)], y[:len(labels)] = audio, labels
        return x, y

    def __call__(self, rng):
        items = [self.item(self.utts[int(i)], rng) for i in rng.integers(0, len(self.utts), self.batch)]
        return torch.from_numpy(np.stack([a for a, _ in items])), torch.from_numpy(np.stack([b for _, b in items]))


def phone_loss(model, batch):
    audio, labels = batch
    logits = model(audio)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE)
    valid = labels != IGNORE
    acc = (logits.argmax(-1)[valid] == labels[valid]).float().mean()
    return loss, {"loss": loss.item(), "acc": acc.item()}


@torch.no_grad()
def evaluate_phones(model, corpus, utts) -> dict:
    """Frame phone cross-entropy and accuracy over whole utterances (no augmentation)."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for utt in utts:
        audio = load_audio(corpus, utt)
        labels = torch.from_numpy(phone_labels(load_motion(corpus, utt), len(audio) // HOP_50))
        logits = model(torch.from_numpy(audio)[None])[0]
        total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(-1) == labels).sum().item()
        count += len(labels)
    return {"loss": total_loss / count, "acc": correct / count, "frames": count}


def train(args) -> int:
    torch.set_num_threads(args.threads)
    overrides = SMALL if args.small else {}
    cfg = EncoderConfig(kind=args.kind, **overrides)
    model = SpeechEncoder(cfg)
    train_utts = utterances(args.corpus, "train")
    val_utts = utterances(args.corpus, "val", limit=4 if args.small else args.val_utts)
    hours = sum(u["duration"] for u in train_utts) / 3600
    steps = args.steps or (40 if args.small else max(1, int(args.epochs * hours * 3600 / (args.batch * args.seconds))))
    val_every = args.val_every or (20 if args.small else max(1, steps // args.epochs))
    prov = provenance(args.seed, corpus_data(args.corpus), config=asdict(cfg), steps=steps, batch=args.batch,
                      seconds=args.seconds, train_hours=hours,
                      params=sum(p.numel() for p in model.parameters()))
    print(f"encoder {cfg.kind}: {prov['params'] / 1e6:.2f} M params, {hours:.2f} h train audio, {steps} steps")
    result = fit(model, args.out, next_batch=PhoneBatches(args.corpus, train_utts, args.batch,
                                                          1.0 if args.small else args.seconds, not args.no_augment),
                 loss_fn=phone_loss, validate=lambda m: evaluate_phones(m, args.corpus, val_utts),
                 steps=steps, val_every=val_every, lr=args.lr, seed=args.seed, config=asdict(cfg), prov=prov,
                 max_minutes=args.max_minutes, stop_at=args.stop_at,
                 warmup=10 if args.small else 500, desc=f"encoder {cfg.kind}")
    print(result)
    return 0


def evaluate_cmd(args) -> int:
    torch.set_num_threads(args.threads)
    model = load_encoder(args.encoder)
    res = evaluate_phones(model, args.corpus, utterances(args.corpus, args.split, limit=args.limit))
    res.update(split=args.split, encoder=str(args.encoder), corpus=str(args.corpus))
    print(res)
    if args.json:
        write_json(args.json, res)
    return 0


def export_cmd(args) -> int:
    from training.speech.export import export_audio_encoder
    export_audio_encoder(load_encoder(args.encoder), args.out)
    print(f"wrote {args.out}")
    return 0


def bench_steps(kinds=("logmel", "wav2vec2"), steps: int = 3, batch: int = 8, seconds: float = 3.0) -> dict:
    """Seconds per training step of fresh default-size encoders, steps interleaved so that both see
    the same machine load (the machine is shared)."""
    import time
    torch.manual_seed(0)
    models = {k: SpeechEncoder(EncoderConfig(kind=k)) for k in kinds}
    opts = {k: torch.optim.Adam(m.parameters(), 1e-4) for k, m in models.items()}
    audio = torch.randn(batch, int(seconds * 16000)) * 0.1
    labels = torch.randint(0, len(INVENTORY), (batch, int(seconds * 50)))
    times = {k: [] for k in kinds}
    for i in range(steps + 1):
        for k, model in models.items():
            t0 = time.perf_counter()
            loss, _ = phone_loss(model, (audio, labels))
            opts[k].zero_grad()
            loss.backward()
            opts[k].step()
            if i:   # the first step warms up allocators and kernels
                times[k].append(time.perf_counter() - t0)
    return {k: float(np.mean(v)) for k, v in times.items()}


def compare_cmd(args) -> int:
    """Table of several encoder runs: size, time per step, validation phone accuracy over steps."""
    import json
    rows = []
    for run in args.runs:
        log = [json.loads(line) for line in (Path(run) / "log.jsonl").read_text().splitlines()]
        prov = json.loads((Path(run) / "provenance.json").read_text())
        from datetime import datetime
        start = datetime.fromisoformat(prov["date"]).timestamp()   # wall time incl. validation, per step
        secs = (log[-1]["time"] - start) / max(1, log[-1]["step"])
        best = max(log, key=lambda r: r["val"]["acc"])
        rows.append({"run": str(run), "kind": prov["config"]["kind"], "params_m": prov["params"] / 1e6,
                     "batch": prov["batch"], "seconds": prov["seconds"], "s_per_step": secs,
                     "steps": log[-1]["step"], "val_acc": log[-1]["val"]["acc"], "best_val_acc": best["val"]["acc"],
                     "curve": [(r["step"], round(r["val"]["acc"], 4)) for r in log]})
    lines = ["# Speech encoder comparison", "",
             f"Machine {prov['machine']} (shared with other jobs); "
             f"corpus `{prov['data']['corpus']}`; date {prov['date']}; commit `{prov['commit']}`.", "",
             "| kind | params (M) | batch x s | s/step | steps | val phone acc | best |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['params_m']:.2f} | {r['batch']} x {r['seconds']} | {r['s_per_step']:.2f} | "
                     f"{r['steps']} | {r['val_acc']:.3f} | {r['best_val_acc']:.3f} |")
    lines += ["", "Validation accuracy by step:", ""] + [f"- {r['kind']}: {r['curve']}" for r in rows] + [""]
    if args.bench_steps:
        torch.set_num_threads(args.threads)
        bench = bench_steps(steps=args.bench_steps)
        rows.append({"bench_s_per_step": bench, "threads": args.threads, "batch": 8, "seconds": 3.0})
        lines += [f"Interleaved step timing ({args.threads} thread(s), batch 8 x 3 s, {args.bench_steps} steps each): "
                  + ", ".join(f"{k} {v:.2f} s" for k, v in bench.items()), ""]
    out = Path(args.report)
    write_json(out.with_suffix(".json"), rows)
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("encoder", help="speech encoder: train on phones, evaluate, export ONNX")
    sub = p.add_subparsers(dest="encoder_command", required=True)
    t = sub.add_parser("train", help="train (resumes from OUT/last.pt)")
    t.add_argument("--corpus", required=True, type=Path)
    t.add_argument("--out", required=True, type=Path)
    t.add_argument("--kind", default="logmel", choices=["logmel", "wav2vec2"])
    t.add_argument("--epochs", type=float, default=20)
    t.add_argument("--steps", type=int, default=0, help="total steps (default: from --epochs)")
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--seconds", type=float, default=3.0, help="crop length")
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--val-every", type=int, default=0)
    t.add_argument("--val-utts", type=int, default=200)
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--max-minutes", type=float, default=0, help="stop cleanly after this long (resume later)")
    t.add_argument("--stop-at", type=int, default=0, help="stop cleanly at this step (schedule unchanged)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--small", action="store_true", help="tiny model, few steps (tests)")
    t.set_defaults(func=train)
    e = sub.add_parser("eval", help="frame phone accuracy on a split")
    e.add_argument("--encoder", required=True, type=Path)
    e.add_argument("--corpus", required=True, type=Path)
    e.add_argument("--split", default="test")
    e.add_argument("--limit", type=int, default=None)
    e.add_argument("--json", type=Path)
    e.add_argument("--threads", type=int, default=1)
    e.set_defaults(func=evaluate_cmd)
    c = sub.add_parser("compare", help="compare encoder runs (speed, phone accuracy) -> report")
    c.add_argument("runs", nargs="+", type=Path)
    c.add_argument("--report", type=Path, default=Path("reports/encoder_comparison"))
    c.add_argument("--bench-steps", type=int, default=0, help="also time N interleaved steps of each kind")
    c.add_argument("--threads", type=int, default=1)
    c.set_defaults(func=compare_cmd)
    x = sub.add_parser("export", help="ONNX: audio [B,N] -> features [B,N//640,C]")
    x.add_argument("--encoder", required=True, type=Path)
    x.add_argument("--out", required=True, type=Path)
    x.set_defaults(func=export_cmd)
