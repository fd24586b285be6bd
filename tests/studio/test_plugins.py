"""`thunder batch`, `thunder-train demo` and the Blender renderer of `corpus preview` come
from studio through entry points (pyproject.toml): the commands keep their names and
arguments while `backend` and `training` never import studio. Needs the package installed
(`make setup` / `pip install -e .`): the entry points live in its metadata."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

from backend import plugins

ROOT = Path(__file__).resolve().parents[2]


def test_installed_entry_points_are_pyprojects():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert set(declared) == {"thunder.commands", "thunder_train.commands", "thunder.head_renderers"}
    for group, points in declared.items():
        found = plugins.load(group)
        assert set(found) == set(points), f"{group}: reinstall (pip install -e .) to pick up pyproject.toml"
        for name, target in points.items():
            module, attr = target.split(":")
            assert (found[name].__module__, found[name].__qualname__.split(".")[0]) == (module, attr)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_thunder_batch_keeps_its_name_and_arguments():
    from backend.cli import PLUGINS, build_parser

    assert PLUGINS == "thunder.commands"
    batch = _subcommands(build_parser())["batch"]
    args = batch.parse_args(
        ["a.blend", "--takes", "2", "--seed", "5", "--force", "--bundle", "B", "--addon", "bl_ext.user_default.thunder"]
    )
    assert (args.takes, args.seed, args.force, args.bundle, args.func.__module__) == (2, 5, True, "B", "studio.batch")


def test_thunder_train_demo_keeps_its_name_and_arguments():
    from training.cli import PLUGINS, build_parser

    assert PLUGINS == "thunder_train.commands"
    demo = _subcommands(build_parser())["demo"]
    args = demo.parse_args(["--out", "o", "--frames", "3", "--resolution", "96x80", "--takes", "2"])
    assert (args.out, args.frames, args.resolution, args.takes) == ("o", 3, (96, 80), 2)
    assert args.func.__module__ == "studio.demo"


def test_a_broken_plugin_is_left_out_with_a_warning(monkeypatch, caplog):
    class Broken:
        name, group = "broken", "thunder.commands"

        def load(self):
            raise ImportError("no bpy")

    monkeypatch.setattr(plugins, "entry_points", lambda group: [Broken()] if group == "thunder.commands" else [])
    assert plugins.load("thunder.commands") == {}
    assert "broken unavailable: no bpy" in caplog.text
