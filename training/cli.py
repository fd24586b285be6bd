"""`thunder-train`: one entry point, one sub-command module per stage.

Each module in COMMANDS defines `register(subparsers)` that adds its parser and
sets `func` (called with the parsed args). Modules import lazily so that
`thunder-train --help` stays fast and one broken stage cannot hide the others.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# sub-command name -> module defining register(subparsers)
COMMANDS = {
    "head": "training.head.cli",
    "corpus": "training.corpus.cli",
    "demo": "training.demo",
    "encoder": "training.speech.train_encoder",
    "units": "training.speech.units",
    "m2s": "training.m2s.cli",
    "denoiser": "training.denoiser.cli",
    "evaluate": "training.denoiser.evaluate",
    "effects": "training.denoiser.effects",
    "fidelity": "training.denoiser.fidelity",
    "export": "training.export",
    "recipe": "training.recipe",
    "curves": "training.curves",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thunder-train", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
