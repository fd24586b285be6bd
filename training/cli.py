"""`thunder-train`: one entry point, one sub-command module per stage.

Each module in COMMANDS defines `register(subparsers)` that adds its parser and
sets `func` (called with the parsed args). Modules import lazily so that
`thunder-train --help` stays fast and one broken stage cannot hide the others.
Other packages add theirs as entry points (backend/plugins.py): `thunder-train
demo` comes from `studio.demo`, which drives Blender.

Diagnostics go through `logging` (logger "training", on stderr); a command's product
(a report table, a summary) goes to stdout (training/console.py). A `TrainingError`
(training/errors.py) ends the command with one line, `thunder-train COMMAND: message`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from backend import plugins
from training.errors import TrainingError

# sub-command name -> module defining register(subparsers)
COMMANDS = {
    "head": "training.head.cli",
    "corpus": "training.corpus.cli",
    "encoder": "training.speech.train_encoder",
    "units": "training.speech.units",
    "m2s": "training.m2s.cli",
    "denoiser": "training.denoiser.cli",
    "evaluate": "training.denoiser.evaluate",
    "effects": "training.denoiser.effects",
    "fidelity": "training.denoiser.fidelity",
    "frontier": "training.denoiser.frontier",
    "export": "training.export",
    "recipe": "training.recipe",
    "curves": "training.curves",
    "whisper": "training.speech.whisper",
    "probe": "training.speech.probe",
    "unpack": "training.unpack",
}
PLUGINS = "thunder_train.commands"  # entry points: name -> register(subparsers) of another package


class _Console(logging.StreamHandler):
    """stderr as it is when a record is written (a redirect, a test's capture), not as it
    was when the handler was made: the recipe calls `main` again for every stage."""

    stream = property(lambda self: sys.stderr, lambda self, value: None)


def console_logging() -> None:
    """The trainers' progress (logger "training") on stderr, once per process."""
    log = logging.getLogger("training")
    if not any(isinstance(h, _Console) for h in log.handlers):
        handler = _Console()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thunder-train", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).register(sub)
    for register in plugins.load(PLUGINS).values():
        register(sub)
    return parser


def command_name(args: argparse.Namespace) -> str:
    """The command as typed, e.g. "corpus preview": a command with sub-commands names their
    parser's dest `<command>_command` (training/corpus/cli.py and the others)."""
    sub = getattr(args, f"{args.command}_command", None)
    return f"{args.command} {sub}" if sub else args.command


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console_logging()
    try:
        result = args.func(args)
    except TrainingError as err:  # the user's to fix: one line and exit 1, not a traceback
        raise SystemExit(f"thunder-train {command_name(args)}: {err}") from err
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
