"""`thunder-train probe`: how much of the phone an encoder's features say, frame by frame.

A linear probe (multinomial logistic regression on standardised features) is fitted
on the corpus's training utterances, on exactly the 25 Hz features the denoiser is
conditioned on, with each frame labelled by the phone covering its centre; its frame
accuracy is then measured on held-out speech: the test split's real speakers (never
heard in training) and its synthetic speakers, apart. The same utterances, labels,
probe and budget for every encoder, so the numbers compare encoders, not probes.
"""

from __future__ import annotations

import logging
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from backend import jsonio
from training.console import to_stdout

log = logging.getLogger(__name__)
PROBE_STEPS = 400
PROBE_LR = 0.05
PROBE_WD = 1e-4


@torch.no_grad()
def frames(encoder, corpus: Path, utts: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, C), phone index (N,)) over the utterances' 25 Hz frames."""
    from training.speech.data import load_audio, load_motion, phone_labels

    xs, ys = [], []
    for u in tqdm(utts, desc="features", unit="utt", mininterval=5, leave=False):
        audio = load_audio(corpus, u)
        n = len(audio) // 640
        if n < 2:
            continue
        f = encoder.features_25(torch.from_numpy(audio[: n * 640])[None])[0].numpy()
        xs.append(f)
        ys.append(phone_labels(load_motion(corpus, u), len(f), rate=25.0))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)


def fit(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int = 0):
    """Full-batch L-BFGS logistic regression on standardised x; returns predict(x) -> labels."""
    torch.manual_seed(seed)
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt, yt = torch.from_numpy((x - mean) / std), torch.from_numpy(y)
    lin = torch.nn.Linear(x.shape[1], n_classes)
    opt = torch.optim.LBFGS(
        lin.parameters(), lr=1.0, max_iter=PROBE_STEPS, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xt), yt) + PROBE_WD * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)

    @torch.no_grad()
    def predict(z: np.ndarray) -> np.ndarray:
        return lin(torch.from_numpy((z - mean) / std)).argmax(1).numpy()

    return predict


def probe(corpus: Path, encoders: dict[str, str], train_limit: int = 1500, seed: int = 0) -> dict:
    from training.corpus.dataset import load_corpus
    from training.corpus.phones import INVENTORY
    from training.provenance import git_commit
    from training.speech.encoder import load_encoder

    c = load_corpus(corpus)
    rng = np.random.default_rng(seed)
    train = c.split("train")
    train = [train[i] for i in sorted(rng.permutation(len(train))[:train_limit])]
    test = c.split("test")
    sets = {
        "test_real": [u for u in test if u["source"] == "real"],
        "test_synthetic": [u for u in test if u["source"] != "real"],
    }
    rows = []
    for name, path in encoders.items():
        t0 = time.time()
        enc = load_encoder(path)
        x, y = frames(enc, corpus, train)
        predict = fit(x, y, len(INVENTORY), seed)
        row = {"encoder": name, "path": str(path), "dim": int(x.shape[1]), "train_frames": int(len(y))}
        row["train_accuracy"] = float((predict(x) == y).mean())
        for set_name, utts in sets.items():
            if not utts:
                row[set_name] = None
                continue
            xs, ys = frames(enc, corpus, utts)
            row[set_name] = float((predict(xs) == ys).mean())
            row[f"{set_name}_frames"] = int(len(ys))
        row["seconds"] = round(time.time() - t0, 1)
        log.info("%s: %s", name, {k: v for k, v in row.items() if "accuracy" in k or k.startswith("test")})
        rows.append(row)
    heldout = sorted({u["speaker"] for u in sets["test_real"]})
    return {
        "rows": rows,
        "corpus": str(corpus),
        "train_utterances": len(train),
        "heldout_real_speakers": heldout,
        "heldout_real_minutes": round(sum(u["duration"] for u in sets["test_real"]) / 60, 2),
        "probe": {"kind": "multinomial logistic regression, L-BFGS", "steps": PROBE_STEPS, "weight_decay": PROBE_WD},
        "machine": f"{platform.node()} {platform.machine()} {torch.get_num_threads()} threads",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
    }


def markdown(res: dict) -> str:
    lines = [
        f"Linear probe, frame phone accuracy at 25 Hz (chance ~ the commonest phone's share); trained on "
        f"{res['train_utterances']} training utterances; held-out real speakers "
        f"{', '.join(res['heldout_real_speakers'])} "
        f"({res['heldout_real_minutes']} min); {res['machine']}, {res['date']}, commit {res['commit']}",
        "",
        "| encoder | dim | train | test: real held-out | test: synthetic |",
        "|---|---|---|---|---|",
    ]
    cell = lambda v: "n/a" if v is None else f"{v:.3f}"
    for r in res["rows"]:
        lines.append(
            f"| {r['encoder']} | {r['dim']} | {cell(r['train_accuracy'])} | {cell(r['test_real'])} | "
            f"{cell(r['test_synthetic'])} |"
        )
    return "\n".join(lines) + "\n"


def register(subparsers) -> None:
    p = subparsers.add_parser("probe", help="frame phone accuracy of a linear probe on encoders' features")
    p.add_argument("--corpus", required=True, type=Path)
    p.add_argument(
        "--encoder", action="append", required=True, metavar="NAME=PATH", help="an encoder run or transformers folder"
    )
    p.add_argument("--train-limit", type=int, default=1500, help="training utterances the probe sees")
    p.add_argument("--out", type=Path, default=Path("reports/encoder-probe"), help="writes OUT.json and OUT.md")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    encoders = dict(e.split("=", 1) for e in args.encoder)
    res = probe(args.corpus, encoders, args.train_limit)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    jsonio.write_json(args.out.with_suffix(".json"), jsonio.finite(res), indent=1)
    args.out.with_suffix(".md").write_text(markdown(res))
    to_stdout(markdown(res))
    return 0
