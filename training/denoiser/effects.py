"""`thunder-train effects`: the paper's claim as effect sizes, from an evaluation JSON.

Each `--pair WITH:WITHOUT` names two rows of one `thunder-train evaluate` report
(same utterances, same sampler), typically the same training seed with and
without the M2S loss. Per pair and metric: the paired difference over
utterances (with - without), its mean, a bootstrap 95 % interval, Cohen's d_z
(mean / std of the differences) and the share of utterances where "with" is
better. Across pairs (training seeds): the mean and spread of the per-pair mean
differences, and a verdict. Writes `<out>.md` and `<out>.json`.
"""

from __future__ import annotations

from pathlib import Path

from backend import jsonio

import numpy as np

from training.console import to_stdout
from training.errors import ConfigError, DataError

# metric -> +1 when higher is better, -1 when lower is better, 0 when it is a cost to report (diversity)
DIRECTION = {
    "lve": -1,
    "l_ccc": +1,
    "l_pcc": +1,
    "lip_dtw": -1,
    "sync": +1,
    "s_div_l": 0,
    "t_div_l": 0,
    "s_div_u": 0,
    "t_div_u": 0,
    "fdd_l": 0,
    "fdd_u": 0,
}


# What the pairs differ by, unless `--of` says otherwise: the paper's claim.
M2S = "the M2S loss"


def register(subparsers) -> None:
    p = subparsers.add_parser("effects", help="with vs without M2S: paired effect sizes over training seeds")
    p.add_argument("report", type=Path, help="evaluation JSON from `thunder-train evaluate`")
    p.add_argument(
        "--pair",
        action="append",
        required=True,
        metavar="WITH:WITHOUT",
        help="two variant names of the report (repeat per training seed)",
    )
    p.add_argument("--sampler", default=None, help="sampler:steps of the rows to compare (default: the first)")
    p.add_argument("--out", type=Path, default=Path("reports/denoiser-m2s-effect"), help="output stem")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    p.add_argument(
        "--of",
        default=M2S,
        metavar="WHAT",
        help=f'what WITH has and WITHOUT lacks, in the table\'s words (default "{M2S}")',
    )
    p.set_defaults(func=_cli)


def _row(report: dict, variant: str, sampler: str | None) -> dict:
    rows = [
        r
        for r in report["rows"]
        if r["variant"] == variant  # deterministic rows have one setting
        and (sampler is None or f"{r['sampler']}:{r['steps']}" == sampler or r["samples"] == 1)
    ]
    if not rows:
        raise DataError(f"no row {variant!r}{' with sampler ' + sampler if sampler else ''} in the report")
    if "per_utterance" not in rows[0]:
        raise DataError("the report has no per-utterance values (re-run `thunder-train evaluate`)")
    return rows[0]


def paired(a: np.ndarray, b: np.ndarray, direction: int, boot: int, rng: np.random.Generator) -> dict:
    """Effect of a over b on paired per-utterance values (NaN pairs dropped)."""
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    if len(d) < 2:
        return {"n": int(len(d))}
    means = d[rng.integers(0, len(d), (boot, len(d)))].mean(1)
    sd = float(d.std(ddof=1))
    out = {
        "n": int(len(d)),
        "with": float(a[ok].mean()),
        "without": float(b[ok].mean()),
        "diff": float(d.mean()),
        "ci95": [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))],
        "d_z": float(d.mean() / sd) if sd > 0 else 0.0,
        "relative": float(d.mean() / abs(b[ok].mean())) if b[ok].mean() != 0 else float("nan"),
    }
    if direction:
        out["better_share"] = float(np.mean(direction * d > 0))
    return out


def effects(
    report: dict,
    pairs: list[tuple[str, str]],
    sampler: str | None = None,
    boot: int = 2000,
    seed: int = 0,
    of: str = M2S,
) -> dict:
    rng = np.random.default_rng(seed)
    per_pair = []
    for with_name, without_name in pairs:
        a, b = _row(report, with_name, sampler), _row(report, without_name, sampler)
        if a["per_utterance"]["ids"] != b["per_utterance"]["ids"]:
            raise DataError(f"{with_name} and {without_name} were scored on different utterances")
        metrics = {}
        for k, direction in DIRECTION.items():
            if k in a["per_utterance"] and k in b["per_utterance"]:
                metrics[k] = paired(
                    np.asarray(a["per_utterance"][k], float),
                    np.asarray(b["per_utterance"][k], float),
                    direction,
                    boot,
                    rng,
                )
        per_pair.append({"with": with_name, "without": without_name, "metrics": metrics})
    summary = {}
    for k, direction in DIRECTION.items():
        diffs = [p["metrics"][k]["diff"] for p in per_pair if "diff" in p["metrics"].get(k, {})]
        if not diffs:
            continue
        cis = [p["metrics"][k]["ci95"] for p in per_pair]
        if direction == 0:
            verdict = "cost (reported)"
        elif all(direction * lo > 0 and direction * hi > 0 for lo, hi in cis):
            verdict = f"with {of} better in every seed (95 % CI excludes 0)"
        elif all(direction * lo < 0 and direction * hi < 0 for lo, hi in cis):
            verdict = f"with {of} WORSE in every seed (95 % CI excludes 0)"
        elif all(direction * d > 0 for d in diffs):
            verdict = f"with {of} better in every seed, not significant in all"
        else:
            verdict = "mixed / no effect"
        summary[k] = {
            "mean_diff": float(np.mean(diffs)),
            "seed_spread": float(np.std(diffs, ddof=1)) if len(diffs) > 1 else float("nan"),
            "per_seed": diffs,
            "verdict": verdict,
        }
    return {
        "of": of,
        "report": report.get("commit"),
        "sampler": sampler,
        "utterances": report.get("utterances"),
        "pairs": per_pair,
        "summary": summary,
    }


def markdown(result: dict, source: str) -> str:
    lines = [
        f"Effect of {result['of']} (with - without), paired over {result['utterances']} utterances, "
        f"from `{source}`; {len(result['pairs'])} training seed pair(s): "
        + ", ".join(f"{p['with']} vs {p['without']}" for p in result["pairs"]),
        "",
        "| metric | better | mean diff over seeds | seed spread (sd) "
        "| per seed: diff [95 % CI], d_z, share better | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for k, s in result["summary"].items():
        cells = []
        for p in result["pairs"]:
            m = p["metrics"][k]
            share = f", {m['better_share']:.0%}" if "better_share" in m else ""
            cells.append(f"{m['diff']:+.3f} [{m['ci95'][0]:+.3f}, {m['ci95'][1]:+.3f}], {m['d_z']:+.2f}{share}")
        better = {1: "higher", -1: "lower", 0: "–"}[DIRECTION[k]]
        lines.append(
            f"| {k} | {better} | {s['mean_diff']:+.3f} | {s['seed_spread']:.3f} | "
            + "<br>".join(cells)
            + f" | {s['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def _cli(args) -> int:
    report = jsonio.read_json(args.report)
    pairs = []
    for p in args.pair:
        if ":" not in p:
            raise ConfigError(f"--pair wants WITH:WITHOUT, got {p!r}")
        pairs.append(tuple(p.split(":", 1)))
    result = effects(report, pairs, args.sampler, args.boot, of=args.of)
    write_summary(args.out, result, markdown(result, str(args.report)))
    return 0


def write_summary(stem: Path, result: dict, md: str) -> None:
    """<stem>.json and <stem>.md of a summary computed from a report; the table is printed too
    (stdout: the table is what `effects` and `fidelity` are run for)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    jsonio.write_json(stem.with_suffix(".json"), jsonio.finite(result))
    stem.with_suffix(".md").write_text(md)
    to_stdout(md)
