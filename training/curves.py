"""`thunder-train curves`: validation curves of several runs on one figure.

Stage B runs start where their `--init` run stopped: `--offset NAME=STEPS` draws
them after it. One panel per validation metric the runs share, plus a JSON of
the plotted values.
"""

from __future__ import annotations

import logging
from pathlib import Path

from backend import jsonio
from training.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("curves", help="validation curves of several runs on one figure")
    p.add_argument("--run", action="append", required=True, metavar="NAME=RUN", help="run folder (repeat)")
    p.add_argument(
        "--offset",
        action="append",
        default=[],
        metavar="NAME=STEPS",
        help="draw NAME's steps shifted by STEPS (a stage-B run after its init run)",
    )
    p.add_argument("--metric", action="append", default=None, help="validation metrics to draw (default: shared)")
    p.add_argument("--out", type=Path, required=True, help="output stem (.png and .json)")
    p.set_defaults(func=_cli)


def _log(run: Path) -> list[dict]:
    from training.loop import read_log

    rows = read_log(run)
    if not rows:
        raise DataError(f"{run} has no log.jsonl")
    return rows


def curves(runs: dict, offsets: dict, metrics: list[str] | None, out: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = {name: _log(run) for name, run in runs.items()}
    shared = set.intersection(*(set(rows[-1]["val"]) - {"frames"} for rows in logs.values()))
    metrics = metrics or sorted(shared)
    if not metrics:
        raise DataError("the runs share no validation metric")
    data = {
        name: {
            "steps": [r["step"] + offsets.get(name, 0) for r in rows],
            **{m: [r["val"].get(m) for r in rows] for m in metrics},
        }
        for name, rows in logs.items()
    }
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics) + 1.2, 3.2), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for i, (name, d) in enumerate(data.items()):  # one colour per run in every panel
            pts = [(s, v) for s, v in zip(d["steps"], d[m]) if v is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=name, color=f"C{i}")
        ax.set_title(f"val {m}")
        ax.set_xlabel("step")
    handles = {label: h for ax in axes[0] for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), fontsize=7, loc="center right")
    fig.tight_layout(rect=(0, 0, 0.84, 1))  # the legend sits right of the panels
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out.with_suffix(".png"), dpi=100)
    plt.close(fig)
    jsonio.write_json(
        out.with_suffix(".json"),
        jsonio.finite({"runs": {k: str(v) for k, v in runs.items()}, "curves": data}),
        indent=1,
    )
    return data


def _pairs(items: list[str], what: str) -> dict:
    bad = [i for i in items if "=" not in i]
    if bad:
        raise ConfigError(f"{what} wants NAME=VALUE, got {bad[0]!r}")
    return dict(i.split("=", 1) for i in items)


def _cli(args) -> int:
    runs = {k: Path(v) for k, v in _pairs(args.run, "--run").items()}
    offsets = {k: int(v) for k, v in _pairs(args.offset, "--offset").items()}
    curves(runs, offsets, args.metric, args.out)
    log.info("wrote %s", Path(args.out).with_suffix(".png"))
    return 0
