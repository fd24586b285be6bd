"""Train the speech encoder on frame-level phones (50 Hz frame cross-entropy), with augmentation.

    thunder-train encoder train --corpus DIR --out RUN [--kind logmel|wav2vec2] [--max-minutes M]
    thunder-train encoder eval  --encoder RUN --corpus DIR [--split test]
    thunder-train encoder export --encoder RUN --out audio_encoder.onnx

Running `train` again with the same --out resumes from RUN/last.pt; RUN/best.pt is
the checkpoint with the lowest validation loss (what `load_encoder(RUN)` loads).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.speech.augment import augment
from training.corpus.phones import INVENTORY
from training.speech.data import load_audio, load_motion, phone_labels, utterances
from training.speech.encoder import HOP_50, EncoderConfig, SpeechEncoder, load_encoder
from training.config import add_config_options, add_run_options, add_schedule_options, from_args
from training.console import to_stdout
from training.errors import ConfigError
from training.loop import fit
from training.provenance import corpus_data, provenance, write_json

log = logging.getLogger(__name__)
IGNORE = -100


@dataclass(frozen=True)
class TrainConfig:
    """The `encoder` section of a training config (training/configs/*.json)."""

    kind: str  # logmel | wav2vec2 (| whisper: pretrained, converted by `whisper convert`, not trained here)
    model: dict  # EncoderConfig fields over its defaults (the small sizes)
    epochs: float  # sets steps when steps is 0
    steps: int
    batch: int
    seconds: float  # crop length
    lr: float
    warmup: int
    val_every: int  # 0: once an epoch
    val_utts: int
    augment: bool
    max_minutes: float  # 0: no deadline


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
            audio, labels = audio[start * HOP_50 : start * HOP_50 + self.n], labels[start : start + self.n // HOP_50]
        x = np.zeros(self.n, np.float32)
        y = np.full(self.n // HOP_50, IGNORE, np.int64)
        x[: len(audio)], y[: len(labels)] = audio, labels
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


def train(
    out: Path, cfg: TrainConfig, *, corpus: Path, seed: int = 0, stop_at: int = 0, origin: dict | None = None
) -> dict:
    """Train into run folder `out` (resumes from out/last.pt). `origin`: where cfg came
    from (training.config), recorded in provenance.json."""
    if cfg.kind == "whisper":
        raise ConfigError(
            "this config's encoder is Whisper tiny.en, pretrained: `thunder-train whisper convert --out RUN` "
            "makes it; to train the logmel conformer here instead, pass --kind logmel"
        )
    torch.manual_seed(seed)  # the model's initial weights too: the same seed gives the same run
    model_cfg = EncoderConfig(kind=cfg.kind, **cfg.model)
    model = SpeechEncoder(model_cfg)
    train_utts = utterances(corpus, "train")
    val_utts = utterances(corpus, "val", limit=cfg.val_utts)
    hours = sum(u["duration"] for u in train_utts) / 3600
    steps = cfg.steps or max(1, int(cfg.epochs * hours * 3600 / (cfg.batch * cfg.seconds)))
    val_every = cfg.val_every or max(1, steps // cfg.epochs)
    prov = provenance(
        seed,
        corpus_data(corpus),
        config=asdict(model_cfg),
        steps=steps,
        batch=cfg.batch,
        seconds=cfg.seconds,
        train_hours=hours,
        params=sum(p.numel() for p in model.parameters()),
        training_config=origin,
    )
    log.info(
        "encoder %s: %.2f M params, %.2f h train audio, %d steps", model_cfg.kind, prov["params"] / 1e6, hours, steps
    )
    return fit(
        model,
        out,
        next_batch=PhoneBatches(corpus, train_utts, cfg.batch, cfg.seconds, cfg.augment),
        loss_fn=phone_loss,
        validate=lambda m: evaluate_phones(m, corpus, val_utts),
        steps=steps,
        val_every=val_every,
        lr=cfg.lr,
        warmup=cfg.warmup,
        seed=seed,
        config=asdict(model_cfg),
        prov=prov,
        max_minutes=cfg.max_minutes,
        stop_at=stop_at,
        desc=f"encoder {model_cfg.kind}",
    )


def train_cmd(args) -> int:
    torch.set_num_threads(args.threads)
    cfg, origin = from_args(TrainConfig, "encoder", args)
    log.info("%s", train(args.out, cfg, corpus=args.corpus, seed=args.seed, stop_at=args.stop_at, origin=origin))
    return 0


def evaluate_cmd(args) -> int:
    torch.set_num_threads(args.threads)
    model = load_encoder(args.encoder)
    res = evaluate_phones(model, args.corpus, utterances(args.corpus, args.split, limit=args.limit))
    res.update(split=args.split, encoder=str(args.encoder), corpus=str(args.corpus))
    to_stdout(str(res))  # the accuracy asked for
    if args.json:
        write_json(args.json, res)
    return 0


def export_cmd(args) -> int:
    from training.speech.export import export_audio_encoder

    export_audio_encoder(load_encoder(args.encoder), args.out)
    log.info("wrote %s", args.out)
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
            if i:  # the first step warms up allocators and kernels
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

        start = datetime.fromisoformat(prov["date"]).timestamp()  # wall time incl. validation, per step
        secs = (log[-1]["time"] - start) / max(1, log[-1]["step"])
        best = max(log, key=lambda r: r["val"]["acc"])
        rows.append(
            {
                "run": str(run),
                "kind": prov["config"]["kind"],
                "params_m": prov["params"] / 1e6,
                "batch": prov["batch"],
                "seconds": prov["seconds"],
                "s_per_step": secs,
                "steps": log[-1]["step"],
                "val_acc": log[-1]["val"]["acc"],
                "best_val_acc": best["val"]["acc"],
                "curve": [(r["step"], round(r["val"]["acc"], 4)) for r in log],
            }
        )
    lines = [
        "# Speech encoder comparison",
        "",
        f"Machine {prov['machine']} (shared with other jobs); "
        f"corpus `{prov['data']['corpus']}`; date {prov['date']}; commit `{prov['commit']}`.",
        "",
        "| kind | params (M) | batch x s | s/step | steps | val phone acc | best |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['params_m']:.2f} | {r['batch']} x {r['seconds']} | {r['s_per_step']:.2f} | "
            f"{r['steps']} | {r['val_acc']:.3f} | {r['best_val_acc']:.3f} |"
        )
    lines += ["", "Validation accuracy by step:", ""] + [f"- {r['kind']}: {r['curve']}" for r in rows] + [""]
    if args.bench_steps:
        torch.set_num_threads(args.threads)
        bench = bench_steps(steps=args.bench_steps)
        rows.append({"bench_s_per_step": bench, "threads": args.threads, "batch": 8, "seconds": 3.0})
        lines += [
            f"Interleaved step timing ({args.threads} thread(s), batch 8 x 3 s, {args.bench_steps} steps each): "
            + ", ".join(f"{k} {v:.2f} s" for k, v in bench.items()),
            "",
        ]
    out = Path(args.report)
    write_json(out.with_suffix(".json"), rows)
    out.with_suffix(".md").write_text("\n".join(lines))
    to_stdout("\n".join(lines))  # the comparison table asked for
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("encoder", help="speech encoder: train on phones, evaluate, export ONNX")
    sub = p.add_subparsers(dest="encoder_command", required=True)
    t = sub.add_parser("train", help="train (resumes from OUT/last.pt)")
    t.add_argument("--corpus", required=True, type=Path)
    t.add_argument("--out", required=True, type=Path)
    add_config_options(t)
    # hyperparameters: default None = the --config file's `encoder` section
    t.add_argument("--kind", default=None, choices=["logmel", "wav2vec2"])
    t.add_argument("--seconds", type=float, default=None, help="crop length")
    t.add_argument("--no-augment", dest="augment", action="store_const", const=False, default=None)
    add_schedule_options(t)
    add_run_options(t)
    t.set_defaults(func=train_cmd)
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
