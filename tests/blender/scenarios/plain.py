"""A plain Blender (a Python with bpy and nothing of ours) and the installed zip:
Add Head and Generate start the bundled backend on Blender's own Python with the
extension's wheels, as an artist's first click does."""

from __future__ import annotations

import importlib.util
import os
import sys
import time

import bpy

from common import ADDON, add_sound, addon, fresh_scene


def _done(jobs, timeout: float):
    job = jobs.wait(jobs.latest(), timeout)
    return job.state, job.message


def generate_from_zip(wav: str, port: int, takes: int = 4) -> dict:
    launcher, jobs = addon("core.launcher"), addon("core.jobs")
    out = {
        "blender_python": sys.executable,
        # what this Blender's own Python has, before the extension's wheels are on sys.path
        "wheels_dir": launcher.wheel_site_packages(),
    }
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.backend_url, prefs.auto_start, prefs.python, prefs.bundle = f"http://127.0.0.1:{port}", True, "", ""
    cmd, env = launcher.command(port=port, device="cpu")
    out["cmd"], out["pythonpath"] = cmd, env["PYTHONPATH"].split(os.pathsep)
    scene = fresh_scene("25")
    t0 = time.monotonic()
    assert bpy.ops.thunder.add_head() == {"FINISHED"}
    out["add_head"] = _done(jobs, 300)
    out["add_head_s"] = time.monotonic() - t0  # includes starting the backend
    strip = add_sound(scene, wav)
    s = scene.thunder
    s.strip, s.takes_count, s.seed = strip.name, takes, 0
    t0 = time.monotonic()
    assert bpy.ops.thunder.generate() == {"FINISHED"}
    out["generate"] = _done(jobs, 300)
    out["generate_s"] = time.monotonic() - t0
    out["takes"] = [i.action.name for i in s.takes]
    out["running"] = launcher.running()
    out["backend_log"] = launcher.log_tail(3000)
    assert bpy.ops.thunder.backend_stop() == {"FINISHED"}
    return out


def probe_modules() -> dict:
    """Which of the backend's requirements this Python imports by itself (without the add-on)."""
    return {
        m: importlib.util.find_spec(m) is not None
        for m in ("onnxruntime", "fastapi", "uvicorn", "soxr", "soundfile", "multipart", "numpy", "backend")
    }
