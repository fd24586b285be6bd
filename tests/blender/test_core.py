"""The add-on's core (blender_thunder/core/) imports in a Python without bpy, and importing it
(the package's __init__ included) never imports bpy: only the Blender layer does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = sorted(p.stem for p in (ROOT / "blender_thunder" / "core").glob("*.py") if p.stem != "__init__")

# bpy, mathutils and Blender's own modules made unimportable: `import bpy` raises ImportError.
PROBE = """
import importlib, json, sys
for name in ("bpy", "mathutils", "bmesh", "addon_utils", "bpy_extras"):
    sys.modules[name] = None
import blender_thunder
for name in json.loads(sys.argv[1]):
    importlib.import_module("blender_thunder.core." + name)
print(json.dumps(sorted(m for m in sys.modules if sys.modules[m] is not None and m.split(".")[0] in
                        ("bpy", "mathutils", "bmesh", "addon_utils", "bpy_extras"))))
"""


def test_every_core_module_imports_without_bpy():
    assert {"client", "contract", "jobs", "launcher", "messages", "resample"} <= set(CORE)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(CORE)], cwd=str(ROOT), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_the_blender_layer_does_need_bpy():
    """The probe above would pass vacuously if blocking bpy did not work."""
    code = "import sys; sys.modules['bpy'] = None\nimport blender_thunder.operators"
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "bpy" in proc.stderr
