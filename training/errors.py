"""The training package's own exceptions: failures a user can act on.

Library code raises these instead of `SystemExit`, so that a caller (a test, the
recipe, a notebook) can catch them by what went wrong. `training.cli.main` turns
any of them into one line, `thunder-train COMMAND: message`, and a non-zero exit:
no traceback, because the message already says what and where. A bug is not one
of these: it stays a plain exception with its traceback.
"""

from __future__ import annotations


class TrainingError(Exception):
    """A failure the user can act on; the message says what and where."""


class ConfigError(TrainingError):
    """Options or config files that cannot work: a malformed flag value, a flag that needs
    another, a --config that does not exist, a --work folder made with another config."""


class DataError(TrainingError):
    """Inputs that are missing or do not match: a corpus without the utterances asked for,
    a run without its log, reports or runs that cannot be compared, earlier recipe stages
    not done."""


class SetupError(TrainingError):
    """This machine lacks something the command needs (an optional package), and the
    message says what to install or which option does without it."""
