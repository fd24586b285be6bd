"""The add-on's copy of the contract (blender_thunder/core/contract.py, which must not
import `backend`) equals backend/contracts.py, name by name."""
from __future__ import annotations

import ast
from pathlib import Path

from backend import contracts
from blender_thunder.core import contract

ROOT = Path(__file__).resolve().parents[2]


def test_every_name_of_the_copy_equals_the_backends():
    names = [n for n in vars(contract) if n.isupper()]
    assert len(names) >= 11
    for name in names:
        assert getattr(contract, name) == getattr(contracts, name), name


def test_the_copy_never_imports_the_backend():
    for path in (ROOT / "blender_thunder").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "backend":
                raise AssertionError(f"{path}: imports {node.module}")
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "backend" for a in node.names):
                raise AssertionError(f"{path}: imports backend")
