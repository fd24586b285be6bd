"""Where a denoiser's error sits: its x0 prediction's error at each diffusion step t.

A sampler's output is built from x0 predictions made at decreasing noise: at the
noisiest step the model sees (almost) only the audio, exactly the regression
baseline's task; at low noise it mostly copies its input. So the error of the x0
prediction per step, next to the baseline's one number, shows whether diffusion
loses to regression because its audio-only prediction is worse (under-training,
capacity spent on the easy low-noise steps) or because sampling adds error.

Per step, on fixed validation windows and fixed noise: the whole-head vertex error
(RMS mm), the lip-opening error (RMS mm, `losses.LipGap`) and the articulation ratio,
|predicted lip opening| / |target lip opening| on frames where the target is open
more than 4 mm (1 = full articulation, below 1 = mumbling). Writes OUT.md, OUT.json
and OUT.png.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

STEPS = (0, 50, 100, 200, 300, 400, 500, 600, 700, 800, 900, 999)
OPEN_MM = 4.0  # target lip opening above which the articulation ratio is taken


def register(sub) -> None:
    d = sub.add_parser("diagnose", help="x0 prediction error per diffusion step (next to a regression baseline)")
    d.add_argument("--run", action="append", required=True, metavar="NAME=DIR", help="a run (repeat)")
    d.add_argument("--corpus", required=True, type=Path)
    d.add_argument("--encoder", required=True, type=Path)
    d.add_argument("--head", required=True, type=Path, help="head folder (head.npz)")
    d.add_argument("--split", default="val")
    d.add_argument("--batches", type=int, default=8, help="fixed windows: batches of 48 x 70 frames")
    d.add_argument("--cache", type=Path, help="feature cache folder")
    d.add_argument("--out", required=True, type=Path, help="report path without suffix")
    d.set_defaults(func=_main)


@torch.no_grad()
def step_errors(model, loss, batches: list[dict], steps=STEPS, seed: int = 0) -> list[dict]:
    """Per step t: vertex RMS (mm), lip-opening RMS (mm) and articulation ratio on `batches`."""
    rows = []
    for t in [None] if model.cfg.deterministic else steps:
        gen = torch.Generator().manual_seed(seed)
        rec, gap, ratios = [], [], []
        for b in batches:
            pred = loss.predict(model, b, gen, t)
            rec.append(loss.vq.sq_error(pred, b["x"]).mean().item())
            gap.append(loss.lip_gap.loss(pred, b["x"]).item())
            vp, vt = loss.lip_gap.vector(pred).norm(dim=-1), loss.lip_gap.vector(b["x"]).norm(dim=-1)
            open_ = vt > OPEN_MM
            ratios.append((vp[open_] / vt[open_]).mean().item() if open_.any() else float("nan"))
        rows.append(
            {
                "t": t,
                "vertex_rms_mm": float(np.sqrt(np.mean(rec))),
                "gap_rms_mm": float(np.sqrt(np.mean(gap))),
                "articulation": float(np.nanmean(ratios)),
            }
        )
    return rows


def _main(args: argparse.Namespace) -> int:
    from training.denoiser.data import encode_split, random_batch
    from training.denoiser.losses import LipGap, VertexQuadratic
    from training.denoiser.stats import Normaliser
    from training.denoiser.train import DiffusionLoss, load_run
    from training.speech.encoder import load_encoder

    head_dir = args.head if args.head.is_dir() else args.head.parent
    data = encode_split(args.corpus, load_encoder(args.encoder), args.split, args.cache)
    rng = np.random.default_rng(12345)
    batches = [random_batch(data, rng, 48, 70) for _ in range(args.batches)]
    vq, gap = VertexQuadratic.from_head(head_dir / "head.npz"), LipGap(head_dir)
    results = {}
    for spec in args.run:
        name, _, run = spec.partition("=")
        model, stats, ckpt = load_run(Path(run))
        loss = DiffusionLoss(Normaliser(stats), vq, lip_gap=gap)
        results[name] = {"run": run, "step": ckpt.get("step"), "rows": step_errors(model, loss, batches)}
        log.info("%s: %s", name, results[name]["rows"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"split": args.split, "windows": 48 * args.batches, "frames": 70, "open_mm": OPEN_MM}
    args.out.with_suffix(".json").write_text(json.dumps({**meta, "runs": results}, indent=2))
    args.out.with_suffix(".md").write_text(_table(results, meta))
    _plot(results, args.out.with_suffix(".png"))
    return 0


def _table(results: dict, meta: dict) -> str:
    lines = [
        "# x0 prediction error per diffusion step",
        "",
        f"{meta['windows']} fixed {meta['split']} windows of {meta['frames']} frames, fixed noise "
        "(`thunder-train denoiser diagnose`). t = 999: the audio alone (the regression baseline's task); "
        f"articulation: predicted / target lip opening where the target is open > {meta['open_mm']:g} mm.",
        "",
        "| run | checkpoint step | t | vertex RMS (mm) | lip opening RMS (mm) | articulation |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for row in r["rows"]:
            t = "—" if row["t"] is None else row["t"]
            lines.append(
                f"| {name} | {r['step']} | {t} | {row['vertex_rms_mm']:.3f} | {row['gap_rms_mm']:.2f} "
                f"| {row['articulation']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [
        ("vertex_rms_mm", "vertex RMS (mm)"),
        ("gap_rms_mm", "lip opening RMS (mm)"),
        ("articulation", "articulation"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, (key, label) in zip(axes, keys):
        for name, r in results.items():
            rows = r["rows"]
            if rows[0]["t"] is None:
                ax.axhline(rows[0][key], ls="--", color="k", lw=1, label=f"{name} (regression)")
            else:
                ax.plot([x["t"] for x in rows], [x[key] for x in rows], marker="o", ms=3, label=name)
        ax.set_xlabel("diffusion step t (999 = audio only)")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
