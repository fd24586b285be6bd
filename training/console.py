"""What a command prints as its product, kept apart from its diagnostics.

Progress, "wrote X", skipped sources and warnings go through `logging` (logger
"training", on stderr: `training.cli.console_logging`). What the user ran the
command to see goes to stdout through `to_stdout`, so that it can be piped or
redirected without the diagnostics: a report table, a JSON summary, the recipe's
plan and stage lines.
"""

from __future__ import annotations


def to_stdout(text: str) -> None:
    """One block of a command's product on stdout, flushed at once so that it keeps its
    place among the stderr lines of the stages that run after it (the recipe)."""
    print(text, flush=True)
