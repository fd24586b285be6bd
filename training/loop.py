"""Run folders shared by the speech and M2S trainers: provenance, checkpoints, logs.

A run folder holds `last.pt` (everything needed to resume), `best.pt` (lowest
validation loss so far), `log.jsonl` (one line per validation) and
`provenance.json` (command, seed, data, commit, versions, date).
"""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from backend import jsonio


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parents[2])
        commit = out.stdout.strip() if out.returncode == 0 else "uncommitted"
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10,
                               cwd=Path(__file__).resolve().parents[2]).stdout.strip()
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
    import numpy
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


def save_checkpoint(path: str | Path, **state) -> None:
    """Atomic torch.save (a run killed mid-write keeps the previous checkpoint)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path) -> dict | None:
    path = Path(path)
    return torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None


def append_log(out: str | Path, record: dict) -> None:
    with open(Path(out) / "log.jsonl", "a") as f:
        f.write(json.dumps({"time": time.time(), **record}) + "\n")


class Deadline:
    """Stops a run cleanly after max_minutes (0 = never) so it can checkpoint and resume later."""

    def __init__(self, max_minutes: float):
        self.end = time.monotonic() + max_minutes * 60 if max_minutes > 0 else None

    def passed(self) -> bool:
        return self.end is not None and time.monotonic() > self.end


def fit(model: torch.nn.Module, out: str | Path, *, next_batch, loss_fn, validate, steps: int, val_every: int,
        lr: float, seed: int, config: dict, prov: dict, max_minutes: float = 0, warmup: int = 200,
        desc: str = "train", save_minutes: float = 10.0, stop_at: int = 0, param_groups: list | None = None) -> dict:
    """Resumable Adam loop shared by the trainers.

    next_batch(rng) -> batch; loss_fn(model, batch) -> (loss, {name: float});
    validate(model) -> {"loss": float, ...} (lower is better; selects best.pt).
    stop_at > 0 stops (validated and checkpointed) at that step without changing the schedule.
    Resumes from out/last.pt when present (model, optimiser, step, rng, best); last.pt is
    also written every `save_minutes` between validations, so a killed run loses little.
    param_groups: Adam parameter groups (e.g. a lower "lr" for a jointly trained encoder;
    the schedule scales every group alike); default one group of model.parameters() at lr.
    """
    import numpy as np
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.Adam(param_groups if param_groups is not None else model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(s, steps) / steps))))
    step, best, rng = 0, float("inf"), np.random.default_rng(seed)
    torch.manual_seed(seed)
    state = load_checkpoint(out / "last.pt")
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, best = state["step"], state["best"]
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed {out} at step {step} (best val {best:.4f})")
        prov_file = out / "provenance.json"
        if prov_file.exists():   # record every resume next to the original command
            first = json.loads(prov_file.read_text())
            first.setdefault("resumes", []).append({k: prov[k] for k in ("command", "date", "commit", "machine")}
                                                   | {"step": step, "steps": steps})
            if "steps" in first:   # a resume may shorten or lengthen the schedule: the file says the one in force
                first["steps"] = steps
            write_json(prov_file, first)
        if state["provenance"].get("data") != prov.get("data"):
            print(f"warning: the data changed since this run started ({state['provenance'].get('data')} -> "
                  f"{prov.get('data')}); continuing on the new data")
    else:
        write_json(out / "provenance.json", prov)
    deadline = Deadline(max_minutes)
    last_save = time.monotonic()

    def checkpoint(path, **extra):
        save_checkpoint(path, model=model.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                        step=step, best=best, rng=rng.bit_generator.state, torch_rng=torch.get_rng_state(),
                        config=config, provenance=prov, **extra)

    bar = tqdm(total=steps, initial=step, desc=desc, dynamic_ncols=True, mininterval=5)
    running: dict = {}
    stopped = False
    while step < steps:
        model.train()
        loss, metrics = loss_fn(model, next_batch(rng))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        step += 1
        for k, v in metrics.items():
            running[k] = 0.95 * running.get(k, v) + 0.05 * v
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in running.items()}, refresh=False)
        stopped = deadline.passed() or (stop_at > 0 and step >= stop_at)
        if step % val_every == 0 or step == steps or stopped:
            model.eval()
            with torch.no_grad():
                val = validate(model)
            improved = val["loss"] < best
            best = min(best, val["loss"])
            append_log(out, {"step": step, "train": dict(running), "val": val, "best": improved})
            tqdm.write(f"step {step}: train {running} val {val}{' (best)' if improved else ''}")
            if improved:
                checkpoint(out / "best.pt", val=val)
            checkpoint(out / "last.pt")
            last_save = time.monotonic()
        elif time.monotonic() - last_save > save_minutes * 60:
            checkpoint(out / "last.pt")
            last_save = time.monotonic()
        if stopped:
            tqdm.write(f"stopped at step {step} (--max-minutes / --stop-at); run again to resume")
            break
    bar.close()
    plot_curves(out)
    return {"step": step, "best": best, "finished": step >= steps}


def read_log(run: str | Path) -> list[dict]:
    """RUN/log.jsonl as records (one per validation); [] when the run has not logged yet."""
    log = Path(run) / "log.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


def plot_curves(run: Path, ylabel: str = "loss") -> Path | None:
    """RUN/curves.png: validation metrics and the (EMA-smoothed) training loss per logged step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = read_log(run)
    if not rows:
        return None
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in sorted(k for k in rows[-1]["val"] if k != "frames"):
        ax.plot(steps, [r["val"].get(key, np.nan) for r in rows], label=f"val {key}")
    ax.plot(steps, [r["train"].get("loss", np.nan) for r in rows], "k--", label="train loss (EMA)")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title(Path(run).name)
    fig.tight_layout()
    path = Path(run) / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
