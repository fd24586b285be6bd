"""`thunder-train frontier`: lip error against vowel opening, one point per evaluated row.

Issue #15's lip bars pull against each other: lip guidance opens the vowels (bar: >= 80 % of the
corpus articulation) and moves the lips away from the model's estimate, which raises LVE (bar: at
most the regression baseline's). This draws every row of `evaluate` reports as a point (x: vowel
gap as a share of the articulation's, y: LVE), its m/p/b closure written beside it, one panel per
source, with the vowel bar and the regression rows' LVE as lines, so a reader sees which settings
meet both and by how much the others miss. Writes <out>.png and <out>.json.
"""

from __future__ import annotations

import logging
from pathlib import Path

from backend import jsonio
from training.errors import DataError

log = logging.getLogger(__name__)

VOWEL_BAR = 0.80  # issue #15: vowel lip gap >= 80 % of the corpus articulation's


def register(subparsers) -> None:
    p = subparsers.add_parser("frontier", help="LVE against vowel opening of evaluated rows (issue #15's lip bars)")
    p.add_argument("reports", nargs="+", type=Path, help="evaluate reports (.json); rows of one source share a panel")
    p.add_argument("--out", type=Path, required=True, help="output stem (.png and .json)")
    p.set_defaults(func=_cli)


def _points(reports: list[Path]) -> dict:
    """{panel: [point, ...]}; a panel per report source (and split)."""
    panels: dict = {}
    for path in reports:
        try:
            result = jsonio.read_json(path)  # older reports may hold NaN: read as None
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: not an evaluate report ({err})") from err
        panel = f"{result.get('source') or 'all'} {result.get('split', '')}".strip()
        for row in result.get("rows", []):
            m = row.get("metrics", {})
            gap, gt, lve = (m.get(k, {}).get("mean") for k in ("vowel_gap", "vowel_gap_gt", "lve"))
            if gap is None or not gt or lve is None:
                continue  # rows from before the lip checks
            point = {"vowel_share": gap / gt, "lve": lve}
            same = [q for q in panels.get(panel, []) if {k: q[k] for k in point} == point]
            if same:  # the same setting measured again under another name (a reference row): one point
                same[0]["label"] += f" = {row['variant']}"
                continue
            panels.setdefault(panel, []).append(
                {
                    "label": row["variant"],
                    "report": str(path),
                    "vowel_share": gap / gt,
                    "lve": lve,
                    "closure": m.get("closure", {}).get("mean"),
                    "regression": row.get("sampler") == "regression",
                }
            )
    if not panels:
        raise DataError("no row with LVE and the vowel lip check in these reports")
    return panels


def frontier(reports: list[Path], out: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _points(reports)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (panel, points) in zip(axes[0], panels.items()):
        for p in points:
            style = {"marker": "s", "color": "k"} if p["regression"] else {"marker": "o", "color": "C0"}
            ax.scatter(100 * p["vowel_share"], p["lve"], s=28, **style)
            closure = "" if p["closure"] is None else f" ({p['closure']:.2f})"
            ax.annotate(
                p["label"] + closure,
                (100 * p["vowel_share"], p["lve"]),
                fontsize=7,
                xytext=(4, 2),
                textcoords="offset points",
            )
        ax.axvline(100 * VOWEL_BAR, color="C3", ls="--", lw=1, label="vowel bar (80 %)")
        for p in points:
            if p["regression"]:
                ax.axhline(p["lve"], color="k", ls=":", lw=1, label=f"{p['label']} LVE")
        ax.set_xlabel("vowel lip gap, % of the corpus articulation")
        ax.set_ylabel("LVE (mm)")
        ax.set_title(f"{panel}; beside each point: its m/p/b closure", fontsize=9)
        ax.legend(fontsize=7, loc="best")  # clear of the points and their labels where it can
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out.with_suffix(".png"), dpi=100)
    plt.close(fig)
    data = {"vowel_bar": VOWEL_BAR, "panels": panels}
    jsonio.write_json(out.with_suffix(".json"), jsonio.finite(data), indent=1)
    return data


def _cli(args) -> int:
    frontier(args.reports, args.out)
    log.info("wrote %s", Path(args.out).with_suffix(".png"))
    return 0
