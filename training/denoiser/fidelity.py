"""`thunder-train fidelity`: the fast samplers against 1000-step DDPM, from one evaluation JSON.

For each sampler row of a `thunder-train evaluate` report (one run, several
`--samplers`), relative to the reference row (default ddpm:1000): the change in
LVE and in S-DIV-U (and the other headline metrics), the speed-up in sampling
seconds per utterance, and whether the issue's targets hold (|ΔLVE| ≤ 3 %,
|ΔS-DIV-U| ≤ 5 %, ≥ 40× faster). Also the lip-sync score as a take ranker: its
Spearman correlation with LVE over the S takes of each utterance (negative =
the take M2S hears best tends to have the lowest lip error). The speed-up is
measured wall time (on a shared machine it moves with the load), so the table
also gives the model passes each sampler makes. Writes `<out>.md` and `<out>.json`.
"""

from __future__ import annotations

from pathlib import Path

from backend import jsonio
from backend.samplers import SAMPLERS, Schedule, n_evaluations
from training.denoiser.effects import write_summary
from training.errors import DataError

TARGETS = {"lve": 0.03, "s_div_u": 0.05}
MIN_SPEEDUP = 40.0
SHOWN = ["lve", "l_pcc", "lip_dtw", "s_div_u", "s_div_l", "sync"]


def register(subparsers) -> None:
    p = subparsers.add_parser("fidelity", help="fast samplers vs 1000-step DDPM: metric change and speed-up")
    p.add_argument("report", type=Path, help="evaluation JSON with a reference row and fast-sampler rows")
    p.add_argument("--reference", default="ddpm:1000", help="sampler:steps of the reference row")
    p.add_argument("--variant", default=None, help="which run's rows (default: the reference's first)")
    p.add_argument("--out", type=Path, default=Path("reports/denoiser-sampler-fidelity-summary"))
    p.set_defaults(func=_cli)


def fidelity(report: dict, reference: str = "ddpm:1000", variant: str | None = None) -> dict:
    def name(r):
        return f"{r['sampler']}:{r['steps']}"

    refs = [r for r in report["rows"] if name(r) == reference and variant in (None, r["variant"])]
    if not refs:
        raise DataError(f"no {reference} row{' of ' + variant if variant else ''} in the report")
    ref = refs[0]
    passes = lambda r: n_evaluations(r["sampler"], r["steps"], Schedule()) if r["sampler"] in SAMPLERS else None
    rows = []
    for r in report["rows"]:
        if r["variant"] != ref["variant"] or r is ref:
            continue
        rel = {
            k: (r["metrics"][k]["mean"] - ref["metrics"][k]["mean"]) / abs(ref["metrics"][k]["mean"])
            for k in SHOWN
            if k in r["metrics"] and k in ref["metrics"] and ref["metrics"][k]["mean"] != 0
        }
        speedup = ref["sample_seconds_per_utt"] / r["sample_seconds_per_utt"]
        checks = {k: abs(rel[k]) <= tol for k, tol in TARGETS.items() if k in rel}
        checks["speedup"] = speedup >= MIN_SPEEDUP
        rows.append(
            {
                "sampler": name(r),
                "relative": rel,
                "speedup": speedup,
                "checks": checks,
                "seconds_per_utt": r["sample_seconds_per_utt"],
                "model_passes": passes(r),
                "passes": all(checks.values()),
                "metrics": {k: r["metrics"][k]["mean"] for k in r["metrics"]},
            }
        )
    return {
        "variant": ref["variant"],
        "reference": reference,
        "utterances": report["utterances"],
        "samples": ref["samples"],
        "machine": report.get("machine"),
        "date": report.get("date"),
        "reference_metrics": {k: ref["metrics"][k]["mean"] for k in ref["metrics"]},
        "reference_seconds_per_utt": ref["sample_seconds_per_utt"],
        "reference_model_passes": passes(ref),
        "rows": rows,
    }


def _rank(metrics: dict) -> str:
    """The sync/LVE rank correlation, 'n/a' where undefined (one take, or constant scores)."""
    v = metrics.get("sync_lve_rank")
    return "n/a" if v is None or v != v else f"{v:+.2f}"


def markdown(result: dict, source: str) -> str:
    ref = result["reference_metrics"]
    lines = [
        f"Sampler fidelity of `{result['variant']}` against {result['reference']} "
        f"({result['utterances']} utterances × S = {result['samples']}, from `{source}`; {result['machine']}, "
        f"{result['date']}). Targets: |ΔLVE| ≤ 3 %, |ΔS-DIV-U| ≤ 5 %, ≥ {MIN_SPEEDUP:.0f}× faster.",
        "",
        "| sampler | " + " | ".join(SHOWN) + " | rank(sync, LVE) | model passes | s/utt | speed-up | targets |",
        "|---|" + "---|" * (len(SHOWN) + 5),
        f"| {result['reference']} | "
        + " | ".join(f"{ref[k]:.4f}" if k in ref else "" for k in SHOWN)
        + f" | {_rank(ref)} | {result['reference_model_passes']}"
        + f" | {result['reference_seconds_per_utt']:.1f} | 1× | reference |",
    ]
    for r in result["rows"]:
        cells = [f"{r['metrics'][k]:.4f} ({r['relative'][k]:+.1%})" if k in r["relative"] else "" for k in SHOWN]
        failed = [k for k, ok in r["checks"].items() if not ok]
        lines.append(
            f"| {r['sampler']} | "
            + " | ".join(cells)
            + f" | {_rank(r['metrics'])} | {r['model_passes']}"
            + f" | {r['seconds_per_utt']:.2f}"
            + f" | {r['speedup']:.0f}× | {'all met' if r['passes'] else 'missed: ' + ', '.join(failed)} |"
        )
    return "\n".join(lines) + "\n"


def _cli(args) -> int:
    report = jsonio.read_json(args.report)
    result = fidelity(report, args.reference, args.variant)
    write_summary(args.out, result, markdown(result, str(args.report)))
    return 0
