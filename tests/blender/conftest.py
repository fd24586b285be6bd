"""Fixtures of the Blender tests: the built zip, a sandboxed Blender user folder
with it installed, a real backend subprocess, and `run_bpy` (a scenario function
run in its own bpy process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.serve import thunder_serve

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tools"))


def new_sandbox(base: Path) -> dict:
    """Environment of bpy/backend subprocesses with their own Blender user folder and config."""
    env = dict(os.environ)
    env["BLENDER_USER_RESOURCES"] = str(base / "blender_user")
    env["XDG_CONFIG_HOME"] = str(base / "config")
    env["HOME"] = str(base / "home")
    env["PYTHONNOUSERSITE"] = "1"
    env.pop("THUNDER_BUNDLE", None)
    for d in ("blender_user", "config", "home"):
        (base / d).mkdir(parents=True)
    return env


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory) -> dict:
    """Environment of every bpy/backend subprocess: own Blender user folder and config."""
    return new_sandbox(tmp_path_factory.mktemp("blender_sandbox"))


# The Python whose bpy runs the scenarios: this one, or THUNDER_BPY (another Blender version, e.g. 4.5).
BPY_PYTHON = os.environ.get("THUNDER_BPY") or sys.executable


def run_bpy_in(
    env: dict, scenario: str, func: str, timeout: float = 240, python: str = BPY_PYTHON, cwd: Path = ROOT, **params
):
    """Call `func(**params)` from tests/blender/scenarios/<scenario>.py in a fresh bpy process
    (`python`: one with the bpy module; another Blender version for the LTS tests)."""
    work = Path(env["HOME"])
    tag = f"{scenario}.{func}.{time.monotonic_ns()}"
    params_path, out_path = work / f"{tag}.in.json", work / f"{tag}.out.json"
    params_path.write_text(json.dumps(params))
    proc = subprocess.run(
        [
            python,
            str(HERE / "bpy_runner.py"),
            str(HERE / "scenarios" / f"{scenario}.py"),
            func,
            str(params_path),
            str(out_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(cwd),
    )
    if proc.returncode != 0 or not out_path.exists():
        raise AssertionError(
            f"bpy scenario {scenario}.{func} failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return json.loads(out_path.read_text())


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory, tiny_bundle) -> Path:
    """This platform's zip as `make extension` builds it (wheels included), carrying the
    tiny bundle as its model."""
    from build_extension import build, host_platform

    return build(tmp_path_factory.mktemp("dist"), bundle=tiny_bundle, platforms=[host_platform()])[host_platform()]


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


def write_wav(path: Path, seconds: float, rate: int = 16000, seed: int = 0) -> Path:
    """A voiced-like test signal: harmonics under a syllable-rate envelope, plus a little noise."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    env = 0.5 * (1 - np.cos(2 * np.pi * 3.1 * t))
    sig = env * sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((130, 260, 390, 650, 1100), 1))
    sig += 0.01 * rng.standard_normal(len(t))
    sf.write(str(path), (0.5 * sig / np.abs(sig).max()).astype("float32"), rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def wavs(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("audio")
    bad = d / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really a wav file" * 10)
    return {
        "speech": str(write_wav(d / "line.wav", 1.6)),
        "long": str(write_wav(d / "long.wav", 30.0, seed=1)),
        "bad": str(bad),
        "other": str(write_wav(d / "other.wav", 1.2, seed=2)),
    }


@pytest.fixture(scope="session")
def backend(installed, tiny_bundle):
    """`thunder serve` on a free loopback port, with the sandbox's token file."""
    log = Path(installed["HOME"]) / "backend.log"
    with thunder_serve("--bundle", tiny_bundle, "--log-level", "warning", env=installed, log=log, cwd=ROOT) as url:
        token = (Path(installed["XDG_CONFIG_HOME"]) / "thunder" / "token").read_text().strip()
        yield {"url": url, "token": token}


def batch(env, backend, *args):
    """`thunder batch ARGS` against the test backend (the CLI as a studio runs it)."""
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", "batch", *map(str, args), "--url", backend["url"]],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=300,
    )
