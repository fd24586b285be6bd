"""Training configs as data: one JSON file per recipe size, one loader.

`training/configs/full.json` (what every trainer uses without `--config`) and
`training/configs/small.json` (`--small`, minutes on 2 cores) each hold:

- per trainer (`corpus`, `encoder`, `units`, `m2s`, `denoiser`) every hyperparameter
  it uses, exactly the fields of that trainer's config dataclass;
- under `recipe`, per recipe stage, the flags `thunder-train recipe` adds to that
  stage's command (full: run lengths that fit 2 CPU cores; both: the evaluation's size).

`--config NAME|FILE` picks a file (a name in training/configs, or a path); a flag
whose dest is a config field overrides the file. `load_config` is the only reader;
`from_args` gives a trainer its dataclass plus the `origin` its provenance records
(file, sha256, overrides, resolved values), so a run says which file made it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from training.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().with_name("configs")
DEFAULT = "full"
SMALL = "small"


@dataclass(frozen=True)
class ConfigFile:
    name: str  # what --config said: a name in CONFIG_DIR or a path
    path: Path
    sha256: str
    data: dict

    def section(self, name: str) -> dict:
        if name not in self.data:
            raise KeyError(f"{self.path} has no section {name!r} (has {', '.join(self.data)})")
        return dict(self.data[name])

    def recipe(self, stage: str) -> dict:
        """The flags the recipe adds to `stage`'s command ({} when none)."""
        return dict(self.data.get("recipe", {}).get(stage, {}))

    def values(self, section: str, names: set[str], overrides: dict | None = None) -> tuple[dict, dict]:
        """(`section` with `overrides` (None: keep) on top, origin record for provenance);
        the section must hold exactly `names`."""
        values = self.section(section)
        missing, unknown = names - set(values), set(values) - names
        if missing or unknown:  # a typo in a file must not fall back to a silent default
            raise ValueError(f"{self.path} [{section}]: missing {sorted(missing)}, unknown {sorted(unknown)}")
        changed = {k: v for k, v in (overrides or {}).items() if k in names and v is not None}
        values.update(changed)
        return values, {
            "file": self.display_path,
            "name": self.name,
            "sha256": self.sha256,
            "section": section,
            "overrides": changed,
            "resolved": values,
        }

    def build(self, cls, section: str, overrides: dict | None = None):
        """(cls instance from `section` with `overrides` on top, origin record for provenance)."""
        values, origin = self.values(section, {f.name for f in fields(cls)}, overrides)
        return cls(**values), origin

    @property
    def display_path(self) -> str:
        """Repository-relative for the shipped files (so provenance reads the same on every machine)."""
        try:
            return self.path.relative_to(CONFIG_DIR.parents[1]).as_posix()
        except ValueError:
            return str(self.path)


def config_path(name_or_path: str | Path) -> Path:
    """A name (`full`, `small`) in training/configs, else a path to a JSON file."""
    text = str(name_or_path)
    if "/" not in text and "\\" not in text and not text.endswith(".json"):
        path = CONFIG_DIR / f"{text}.json"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))
            raise ConfigError(f"--config {text}: no such config (known: {known}; or give a path to a .json)")
        return path
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(f"--config {text}: no such file")
    return path.resolve()


def load_config(name_or_path: str | Path = DEFAULT) -> ConfigFile:
    path = config_path(name_or_path)
    raw = path.read_bytes()
    return ConfigFile(name=str(name_or_path), path=path, sha256=hashlib.sha256(raw).hexdigest(), data=json.loads(raw))


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=DEFAULT,
        metavar="NAME|FILE",
        help="training config: full or small (training/configs) or a JSON file "
        "(default %(default)s); the flags below override it",
    )
    parser.add_argument(
        "--small", dest="config", action="store_const", const=SMALL, help="same as --config small: minutes, for tests"
    )


def add_schedule_options(parser: argparse.ArgumentParser, *, epochs: bool = True, val_utts: bool = True) -> None:
    """A trainer's schedule flags, named like the fields of its config section (default None:
    the --config file decides): [--epochs] --steps --batch --lr --val-every [--val-utts] --max-minutes."""
    if epochs:
        parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--steps", type=int, default=None, help="total steps (0: from --epochs)" if epochs else None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--val-every", type=int, default=None)
    if val_utts:
        parser.add_argument("--val-utts", type=int, default=None)
    parser.add_argument("--max-minutes", type=float, default=None, help="stop cleanly after this long (resume later)")


def add_run_options(parser: argparse.ArgumentParser, *, threads: int = 1, stop_at: bool = True) -> None:
    """A command's run settings (not in the config): [--stop-at] --seed --threads."""
    if stop_at:
        parser.add_argument("--stop-at", type=int, default=0, help="stop cleanly at this step (schedule unchanged)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=threads)


def from_args(cls, section: str, args: argparse.Namespace):
    """A trainer's (config, origin) from --config and the flags named like its fields
    (argparse defaults of those flags are None: only a flag given overrides the file)."""
    return load_config(args.config).build(cls, section, vars(args))


def recipe_flags(values: dict[str, Any]) -> list[str]:
    """{"val_every": 100} -> ["--val-every", "100"] (the recipe's stage commands)."""
    out: list[str] = []
    for key, value in values.items():
        out += [f"--{key.replace('_', '-')}", str(value)]
    return out
