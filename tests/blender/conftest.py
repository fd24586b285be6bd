"""Fixtures of the Blender tests: the built zip, a sandboxed Blender user folder
with it installed, a real backend subprocess, and `run_bpy` (a scenario function
run in its own bpy process)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tools"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory) -> dict:
    """Environment of every bpy/backend subprocess: own Blender user folder and config."""
    base = tmp_path_factory.mktemp("blender_sandbox")
    env = dict(os.environ)
    env["BLENDER_USER_RESOURCES"] = str(base / "blender_user")
    env["XDG_CONFIG_HOME"] = str(base / "config")
    env["HOME"] = str(base / "home")
    env["PYTHONNOUSERSITE"] = "1"
    for d in ("blender_user", "config", "home"):
        (base / d).mkdir()
    return env


def run_bpy_in(env: dict, scenario: str, func: str, timeout: float = 240, **params):
    """Call `func(**params)` from tests/blender/scenarios/<scenario>.py in a fresh bpy process."""
    work = Path(env["HOME"])
    tag = f"{scenario}.{func}.{time.monotonic_ns()}"
    params_path, out_path = work / f"{tag}.in.json", work / f"{tag}.out.json"
    params_path.write_text(json.dumps(params))
    proc = subprocess.run([sys.executable, str(HERE / "bpy_runner.py"), str(HERE / "scenarios" / f"{scenario}.py"),
                           func, str(params_path), str(out_path)],
                          env=env, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))
    if proc.returncode != 0 or not out_path.exists():
        raise AssertionError(f"bpy scenario {scenario}.{func} failed (exit {proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return json.loads(out_path.read_text())


@pytest.fixture(scope="session")
def head_dir(tmp_path_factory) -> Path:
    """The stand-in head folder (`thunder-train head build`)."""
    from training.head.build import write_head_folder
    out = tmp_path_factory.mktemp("head")
    write_head_folder(str(out))
    return out


@pytest.fixture(scope="session")
def head_npz(head_dir) -> Path:
    return head_dir / "head.npz"


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory) -> Path:
    from build_extension import build
    return build(tmp_path_factory.mktemp("dist"), bundle=None)


@pytest.fixture(scope="session")
def installed(sandbox, extension_zip) -> dict:
    """The sandbox with the extension installed through Blender's own operator."""
    out = run_bpy_in(sandbox, "install", "install", zip_path=str(extension_zip), _enable=False)
    assert out["result"] == ["FINISHED"], out
    return sandbox


@pytest.fixture
def run_bpy(installed):
    def run(scenario: str, func: str, timeout: float = 240, **params):
        return run_bpy_in(installed, scenario, func, timeout=timeout, **params)
    return run
