"""The training loop every trainer shares, and the run folder it keeps.

`fit` is one resumable loop for the encoder, M2S and denoiser trainers: Adam,
linear warm-up then cosine decay to a tenth, gradient-norm clipping, validation
every `val_every` steps (and at the last), best.pt by validation loss, last.pt to
resume, a clean stop at a deadline. A run folder holds `last.pt` (everything needed
to resume), `best.pt`, `log.jsonl` (one line per validation), `curves.png` and
`provenance.json` (`training.provenance`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from backend.files import atomic_path
from training.provenance import write_json

log = logging.getLogger(__name__)

CLIP_NORM = 5.0  # every trainer's gradient-norm clip
LR_FLOOR = 0.1  # the cosine ends at this share of the peak learning rate


def save_checkpoint(path: str | Path, **state) -> None:
    """Atomic torch.save (a run killed mid-write keeps the previous checkpoint)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


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


def fit(
    model: torch.nn.Module,
    out: str | Path,
    *,
    next_batch,
    loss_fn,
    validate,
    steps: int,
    val_every: int,
    lr: float,
    warmup: int,
    seed: int,
    config: dict,
    prov: dict,
    max_minutes: float = 0,
    desc: str = "train",
    save_minutes: float = 10.0,
    stop_at: int = 0,
    param_groups: list | None = None,
) -> dict:
    """Resumable Adam loop shared by the trainers (steps, val_every, lr, warmup, max_minutes:
    the trainer's section of its training config).

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
    from tqdm.contrib.logging import logging_redirect_tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.Adam(param_groups if param_groups is not None else model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warmup) * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + np.cos(np.pi * min(s, steps) / steps)))
        ),
    )
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
        log.info("resumed %s at step %d (best val %.4f)", out, step, best)
        prov_file = out / "provenance.json"
        if prov_file.exists():  # record every resume next to the original command
            first = json.loads(prov_file.read_text())
            first.setdefault("resumes", []).append(
                {k: prov[k] for k in ("command", "date", "commit", "machine")} | {"step": step, "steps": steps}
            )
            if "steps" in first:  # a resume may shorten or lengthen the schedule: the file says the one in force
                first["steps"] = steps
            write_json(prov_file, first)
        if state["provenance"].get("data") != prov.get("data"):
            log.warning(
                "the data changed since this run started (%s -> %s); continuing on the new data",
                state["provenance"].get("data"),
                prov.get("data"),
            )
    else:
        write_json(out / "provenance.json", prov)
    deadline = Deadline(max_minutes)
    last_save = time.monotonic()

    def checkpoint(path, **extra):
        save_checkpoint(
            path,
            model=model.state_dict(),
            optimizer=opt.state_dict(),
            scheduler=sched.state_dict(),
            step=step,
            best=best,
            rng=rng.bit_generator.state,
            torch_rng=torch.get_rng_state(),
            config=config,
            provenance=prov,
            **extra,
        )

    bar = tqdm(total=steps, initial=step, desc=desc, dynamic_ncols=True, mininterval=5)
    running: dict = {}
    stopped = False
    # log lines go through tqdm.write while the bar is up, so they do not tear it
    with logging_redirect_tqdm([logging.getLogger("training")]):
        while step < steps:
            model.train()
            loss, metrics = loss_fn(model, next_batch(rng))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
            opt.step()
            sched.step()
            step += 1
            for k, v in metrics.items():
                running[k] = 0.95 * running.get(k, v) + 0.05 * v
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in running.items()}, refresh=False)
            stopped = deadline.passed() or (stop_at > 0 and step >= stop_at)
            if (val_every > 0 and step % val_every == 0) or step == steps or stopped:  # 0: at the end only
                model.eval()
                with torch.no_grad():
                    val = validate(model)
                improved = val["loss"] < best
                best = min(best, val["loss"])
                append_log(out, {"step": step, "train": dict(running), "val": val, "best": improved})
                log.info("step %d: train %s val %s%s", step, running, val, " (best)" if improved else "")
                if improved:
                    checkpoint(out / "best.pt", val=val)
                checkpoint(out / "last.pt")
                last_save = time.monotonic()
            elif time.monotonic() - last_save > save_minutes * 60:
                checkpoint(out / "last.pt")
                last_save = time.monotonic()
            if stopped:
                log.info("stopped at step %d (--max-minutes / --stop-at); run again to resume", step)
                break
    bar.close()
    plot_curves(out)
    return {"step": step, "best": best, "finished": step >= steps}


def read_log(run: str | Path) -> list[dict]:
    """RUN/log.jsonl as records (one per validation); [] when the run has not logged yet."""
    path = Path(run) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


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
