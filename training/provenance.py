"""What a run folder records about itself: command, seed, data, commit, versions, date.

Shared by every trainer (through `training.loop.fit`), the evaluations and the export.
"""
from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from backend import jsonio

REPO = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, cwd=REPO)
        commit = out.stdout.strip() if out.returncode == 0 else "uncommitted"
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10,
                               cwd=REPO).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def provenance(seed: int, data: dict, **extra) -> dict:
    """`extra` carries what the trainer adds; `training_config` (from training.config)
    names the config file, its sha256 and the resolved values."""
    import numpy
    import torch
    command = " ".join(["thunder-train"] + sys.argv[1:]) if "thunder-train" in sys.argv[0] else " ".join(sys.argv)
    return {"command": command,
            "seed": seed, "data": data, "commit": git_commit(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.node()} {platform.machine()} {torch.get_num_threads()} threads",
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__},
            **extra}


def corpus_data(corpus: str | Path) -> dict:
    corpus = Path(corpus)
    return {"corpus": str(corpus.resolve()), "manifest_sha256": file_sha256(corpus / "manifest.json")}


def write_json(path: str | Path, obj) -> None:
    """A run's record (config, provenance, summary): strict JSON, undefined figures as null."""
    jsonio.write_json(path, jsonio.finite(obj), default=str)
