"""M2S evaluation (THUNDER Table 1 on our corpus) and `m2s listen`.

For each test utterance: each model's mel from the ground-truth motion, vocoded
with Griffin-Lim (backend.vocoder), scored against the recorded audio with STOI,
ESTOI (pystoi), PESQ wide- and narrow-band (pesq), unit accuracy and mel L1
against the targets, and word error rate of pocketsphinx's transcript. Rows for
the recorded audio itself (the recogniser's own error), Griffin-Lim of the
ground-truth mel (the ceiling) and the no-face model (the floor) sit alongside.
"""

from __future__ import annotations

import logging
import platform
import re
import sys
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from backend.vocoder import vocode
from training.m2s.data import utterance_targets
from training.speech.data import load_audio, spread_over_speakers, utterances
from training.console import to_stdout
from training.errors import ConfigError, DataError
from training.provenance import git_commit, write_json

log = logging.getLogger(__name__)
METRICS = ("stoi", "estoi", "pesq_wb", "pesq_nb", "unit_acc", "mel_l1", "wer")


@lru_cache(maxsize=1)
def _decoder():
    from pocketsphinx import Decoder

    return Decoder(loglevel="ERROR")


def transcribe(audio: np.ndarray) -> str:
    """pocketsphinx (bundled US English model and LM) transcript of 16 kHz audio."""
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    dec = _decoder()
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    hyp = dec.hyp()
    return hyp.hypstr if hyp is not None else ""


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]+", " ", text.lower()).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def audio_scores(ref: np.ndarray, deg: np.ndarray) -> dict:
    from pesq import pesq
    from pystoi import stoi

    n = min(len(ref), len(deg))
    ref, deg = ref[:n].astype(np.float64), deg[:n].astype(np.float64)
    out = {"stoi": float(stoi(ref, deg, 16000)), "estoi": float(stoi(ref, deg, 16000, extended=True))}
    for mode in ("wb", "nb"):
        try:
            out[f"pesq_{mode}"] = float(pesq(16000, ref, deg, mode))
        except Exception:  # pesq raises on silent / unusable signals: score it as missing
            out[f"pesq_{mode}"] = float("nan")
    return out


@torch.no_grad()
def predict(model, target: dict) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth motion -> (mel (4T, 80), unit logits (2T, U)) as numpy."""
    mel, logits = model(
        torch.from_numpy(target["exp"])[None],
        torch.from_numpy(target["jaw"])[None],
        torch.from_numpy(target["speaker"])[None],
    )
    return mel[0].numpy(), logits[0].numpy()


def score_row(name: str, results: list[dict]) -> dict:
    row = {"name": name, "n": len(results)}
    for m in METRICS:
        if m == "wer":
            errs = sum(r["wer_edits"] for r in results)
            n_words = sum(r["wer_words"] for r in results)
            row["wer"] = errs / max(n_words, 1)
        else:
            vals = [r[m] for r in results if m in r and np.isfinite(r[m])]
            row[m] = float(np.mean(vals)) if vals else None
    return row


def _machine() -> str:
    import os

    return f"{platform.node()} {platform.machine()} {os.cpu_count()} cores"


def to_markdown(report: dict) -> str:
    lines = [
        f"# M2S evaluation ({report['split']} split, {report['n_utterances']} utterances)",
        "",
        f"Corpus `{report['corpus']}`; machine {report['machine']}; {report['date']}; commit `{report['commit']}`.",
        "Griffin-Lim vocoder (backend.vocoder); WER from pocketsphinx's bundled en-us model and LM.",
        "",
        "| model | STOI | ESTOI | PESQ-WB | PESQ-NB | unit acc | mel L1 | WER |",
        "|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    for row in report["rows"]:
        lines.append(f"| {row['name']} | " + " | ".join(fmt(row.get(m)) for m in METRICS) + " |")
    lines += ["", "Command: `" + report["command"] + "`", ""]
    return "\n".join(lines)


def evaluate(corpus, models: dict, floor=None, split: str = "test", limit: int | None = 50, gl_iters: int = 32) -> dict:
    """models: {name: run folder}; floor: the noface run. Returns the report dict."""
    from training.m2s.train import load_m2s
    from training.speech.encoder import load_encoder
    from training.speech.units import Units

    loaded = {name: load_m2s(run) for name, run in models.items()}
    if floor is not None:
        loaded["no face (floor)"] = load_m2s(floor)
    if not loaded:
        raise ValueError("give at least one --model NAME=RUN (or --floor RUN)")
    first_cfg = next(iter(loaded.values()))[1]["config"]
    encoder, units = load_encoder(first_cfg["encoder"]), Units.load(first_cfg["units"])
    results: dict[str, list[dict]] = {"recorded audio": [], "GT mel + Griffin-Lim (ceiling)": []}
    results.update({name: [] for name in loaded})
    for utt in tqdm(spread_over_speakers(utterances(corpus, split), limit), desc="m2s evaluate", mininterval=5):
        target = utterance_targets(corpus, utt, encoder, units)
        ref = load_audio(corpus, utt)[: len(target["mel"]) * 160]
        ref_words = words(target["text"])

        def add(name, audio, mel=None, unit_logits=None):
            r = audio_scores(ref, audio) if name != "recorded audio" else {}
            hyp = words(transcribe(audio))
            r.update(wer_edits=edit_distance(ref_words, hyp), wer_words=len(ref_words), hyp=" ".join(hyp))
            if mel is not None:
                r["mel_l1"] = float(np.abs(mel - target["mel"]).mean())
            if unit_logits is not None:
                r["unit_acc"] = float((unit_logits.argmax(-1) == target["units"]).mean())
            r["id"] = utt["id"]
            results[name].append(r)

        add("recorded audio", ref)
        add("GT mel + Griffin-Lim (ceiling)", vocode(target["mel"], n_iter=gl_iters), mel=target["mel"])
        for name, (model, _) in loaded.items():
            mel, logits = predict(model, target)
            add(name, vocode(mel, n_iter=gl_iters), mel=mel, unit_logits=logits)
    rows = [score_row(name, res) for name, res in results.items()]
    return {
        "corpus": str(Path(corpus).resolve()),
        "split": split,
        "n_utterances": len(results["recorded audio"]),
        "models": {k: str(v) for k, v in models.items()},
        "floor": str(floor) if floor else None,
        "gl_iters": gl_iters,
        "rows": rows,
        "per_utterance": results,
        "machine": _machine(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "command": " ".join(["thunder-train"] + sys.argv[1:]),
    }


def evaluate_cmd(args) -> int:
    torch.set_num_threads(args.threads)
    models = {}
    for spec in args.model:
        if "=" not in spec:
            raise ConfigError(f"--model expects NAME=RUN, got {spec!r}")
        name, run = spec.split("=", 1)
        models[name] = Path(run)
    report = evaluate(args.corpus, models, args.floor, args.split, args.limit, args.gl_iters)
    out = Path(args.report)
    write_json(out.with_suffix(".json"), report)
    out.with_suffix(".md").write_text(to_markdown(report))
    to_stdout(to_markdown(report))  # the report table asked for
    return 0


def find_utterance(corpus, utt_id: str) -> dict:
    for u in utterances(corpus):
        if u["id"] == utt_id:
            return u
    raise DataError(f"no utterance {utt_id!r} in {corpus}")


def listen_cmd(args) -> int:
    import soundfile as sf
    from training.m2s.train import load_m2s
    from training.speech.encoder import load_encoder
    from training.speech.units import Units

    model, ckpt = load_m2s(args.model)
    cfg = ckpt["config"]
    target = utterance_targets(
        args.corpus, find_utterance(args.corpus, args.utt), load_encoder(cfg["encoder"]), Units.load(cfg["units"])
    )
    mel, _ = predict(model, target)
    audio = vocode(mel, n_iter=args.gl_iters)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.out, audio, 16000, subtype="PCM_16")
    log.info("wrote %s (%.2f s) from %s through %s", args.out, len(audio) / 16000, args.utt, args.model)
    return 0
