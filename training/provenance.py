"""What a run folder records about itself: command, seed, data, commit, versions, date.

Shared by every trainer (through `training.loop.fit`), the evaluations and the export.
"""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

from backend import jsonio
from backend.files import git_commit  # noqa: F401  (re-exported for trainers)
from backend.files import sha256_file as file_sha256

REPO = Path(__file__).resolve().parents[1]


def provenance(seed: int, data: dict, **extra) -> dict:
    """`extra` carries what the trainer adds; `training_config` (from training.config)
    names the config file, its sha256 and the resolved values."""
    import numpy
    import torch

    command = " ".join(["thunder-train"] + sys.argv[1:]) if "thunder-train" in sys.argv[0] else " ".join(sys.argv)
    return {
        "command": command,
        "seed": seed,
        "data": data,
        "commit": git_commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {torch.get_num_threads()} threads",
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__},
        **extra,
    }


def corpus_data(corpus: str | Path) -> dict:
    corpus = Path(corpus)
    return {"corpus": str(corpus.resolve()), "manifest_sha256": file_sha256(corpus / "manifest.json")}


def write_json(path: str | Path, obj) -> None:
    """A run's record (config, provenance, summary): strict JSON, undefined figures as null."""
    jsonio.write_json(path, jsonio.finite(obj), default=str)
