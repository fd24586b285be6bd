"""Run one scenario function inside a fresh bpy process (state isolation).

    python bpy_runner.py SCENARIO_FILE FUNC PARAMS_JSON OUT_JSON

Enables the installed THUNDER extension from the sandboxed user folder that
BLENDER_USER_RESOURCES names, calls FUNC(**params) and writes its return value
as JSON to OUT_JSON (Blender prints to stdout, so stdout carries no data).
"""

import importlib.util
import json
import os
import sys

import bpy  # noqa: F401  (first: it puts Blender's modules on sys.path)
import addon_utils

MODULE = "bl_ext.user_default.thunder"


def main() -> int:
    path, func, params_path, out_path = sys.argv[1:5]
    with open(params_path) as fh:
        params = json.load(fh)
    if params.pop("_enable", True):
        mod = addon_utils.enable(MODULE, default_set=True, handle_error=lambda exc: (_ for _ in ()).throw(exc))
        assert mod is not None, f"could not enable {MODULE}"
    sys.path.insert(0, os.path.dirname(path))  # scenarios import their `common` helpers
    spec = importlib.util.spec_from_file_location("scenario", path)
    scenario = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scenario)
    result = getattr(scenario, func)(**params)
    with open(out_path, "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
