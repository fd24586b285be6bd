"""What the denoiser CLI tests share: the run settings they train with, and a run's log."""

from __future__ import annotations

import json
from pathlib import Path


def _inputs(corpus: Path, encoder: Path, head: Path) -> list[str]:
    return ["--corpus", str(corpus), "--encoder", str(encoder), "--head", str(head)]


def train_args(corpus: Path, encoder: Path, head: Path) -> list[str]:
    """`denoiser train` options of every test run: the tiny corpus, encoder and head,
    --small, one thread, validation every 5 steps."""
    return [*_inputs(corpus, encoder, head), "--small", "--threads", "1", "--val-every", "5"]


def evaluate_args(corpus: Path, encoder: Path, head: Path, runs: dict, samplers: str, samples: int, limit: int, out):
    """`evaluate` of `runs` (name: run folder) on the tiny corpus, writing the report stem `out`."""
    named = [arg for name, run in runs.items() for arg in ("--run", f"{name}={run}")]
    return [
        "evaluate",
        *_inputs(corpus, encoder, head),
        *named,
        "--samplers",
        samplers,
        "--samples",
        str(samples),
        "--limit",
        str(limit),
        "--out",
        str(out),
    ]


def run_log(run: Path) -> list[dict]:
    """The records of a run's log.jsonl, one per validation."""
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
