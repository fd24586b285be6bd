"""Who may import whom. The backend stands alone (the extension zip ships it without the
rest); training builds models and never drives Blender; the add-on talks HTTP and
imports neither; what drives Blender from outside lives in `studio`, which nothing imports
(it plugs into the commands as entry points: tests/studio/test_plugins.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLENDER = {"bpy", "mathutils", "bmesh", "addon_utils", "bpy_extras"}
ADDON_BLENDER_LAYER = {
    f"blender_thunder.{p.stem}"
    for p in (ROOT / "blender_thunder").iterdir()
    if p.stem not in ("core", "__init__", "__pycache__") and (p.suffix == ".py" or p.is_dir())
}
# The backend's running service is its own business; training uses its public pieces only
# (contracts, bundle format, files, jsonio, samplers, the numpy front-end and vocoder, and
# the engine: the library entry point that runs a bundle, which `evaluate --bundle` judges
# exactly as an artist gets it).
BACKEND_INTERNALS = {
    f"backend.{m}"
    for m in (
        "service",
        "routes",
        "worker",
        "middleware",
        "errors",
        "settings",
        "jobs",
        "windows",
        "cli",
        "soak",
        "loadtest",
        "bench",
    )
}
FORBIDDEN = {
    "backend": {"training", "studio", "blender_thunder", "torch"} | BLENDER,
    "training": {"studio", "blender_thunder"} | BACKEND_INTERNALS | BLENDER,
    "blender_thunder": {"backend", "training", "studio"},
    "blender_thunder/core": ADDON_BLENDER_LAYER | BLENDER,  # the bpy-free core (tests/blender/test_core.py)
}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved."""
    package = path.relative_to(ROOT).parent.parts
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            out += [(node.lineno, f"{module}.{a.name}" if not node.module else module) for a in node.names]
    return out


def crossing(folder: str, forbidden: set[str]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line}: imports {name}"
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line, name in imports(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_no_import_crosses_a_layer(folder):
    assert crossing(folder, FORBIDDEN[folder]) == []


def test_the_check_sees_relative_and_lazy_imports():
    """A rule that sees nothing would pass vacuously: these are the forms it must catch."""
    assert any("blender_thunder.rig" in c for c in crossing("studio", {"blender_thunder"}))  # lazy, absolute
    generation = {name for _, name in imports(ROOT / "blender_thunder" / "utils" / "generation.py")}
    assert {"blender_thunder.core", "blender_thunder.utils.takes", "blender_thunder.rig"} <= generation  # relative
