"""The shipped artifact the way an artist runs it: this platform's zip, as `make
extension` builds it with the committed model, installed into a Blender whose
Python has bpy and numpy and nothing of ours (no onnxruntime, no fastapi). Add
Head and Generate must start the bundled backend on that very Python, with the
wheels the extension installed, and key the takes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.serve import free_port

from .conftest import ROOT, new_sandbox, run_bpy_in

pytestmark = [pytest.mark.blender, pytest.mark.slow]
SHIPPED_BUNDLE = ROOT / "backend" / "models" / "thunder-base"
DEMO_WAV = ROOT / "assets" / "speech" / "demo.wav"


def _pin(name: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.lower().startswith(name.lower() + "=="):
            return line.strip()
    raise LookupError(name)


@pytest.fixture(scope="module")
def plain_python(tmp_path_factory) -> str:
    """A fresh venv with only bpy (and what bpy itself requires): Blender's own Python."""
    venv = tmp_path_factory.mktemp("plain_blender") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    proc = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", _pin("bpy"), _pin("numpy")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return python


@pytest.fixture(scope="module")
def shipped_zip(tmp_path_factory) -> Path:
    sys.path.insert(0, str(ROOT / "tools"))
    from build_extension import build, host_platform

    return build(tmp_path_factory.mktemp("dist"), bundle=SHIPPED_BUNDLE, platforms=[host_platform()])[host_platform()]


@pytest.fixture(scope="module")
def plain_blender(tmp_path_factory, plain_python, shipped_zip) -> dict:
    env = new_sandbox(tmp_path_factory.mktemp("plain_sandbox"))
    home = Path(env["HOME"])
    before = run_bpy_in(env, "plain", "probe_modules", python=plain_python, cwd=home, _enable=False)
    out = run_bpy_in(env, "install", "install", python=plain_python, cwd=home, zip_path=str(shipped_zip), _enable=False)
    assert out["result"] == ["FINISHED"], out
    return {"env": env, "python": plain_python, "before": before, "home": home}


def test_the_plain_python_has_none_of_our_requirements(plain_blender):
    before = plain_blender["before"]
    assert before["numpy"], "Blender ships numpy"
    assert not any(
        before[m] for m in ("onnxruntime", "fastapi", "uvicorn", "soxr", "soundfile", "multipart", "backend")
    ), before


def test_generate_runs_the_bundled_backend_on_blenders_python(plain_blender):
    env, python = plain_blender["env"], plain_blender["python"]
    out = run_bpy_in(
        env,
        "plain",
        "generate_from_zip",
        python=python,
        cwd=plain_blender["home"],
        timeout=900,
        wav=str(DEMO_WAV),
        port=free_port(),
        takes=4,
    )
    assert out["add_head"][0] == "done", out["add_head"]
    assert out["generate"][0] == "done", (out["generate"], out["backend_log"])
    assert len(out["takes"]) == 4, out["takes"]
    # The backend ran on this very Python, with the zip's code and the wheels Blender unpacked.
    user = env["BLENDER_USER_RESOURCES"]
    assert out["cmd"][0] == out["blender_python"] and out["cmd"][1:5] == ["-P", "-m", "backend.cli", "serve"]
    assert out["wheels_dir"] and all(p.startswith(user) for p in out["wheels_dir"])
    assert out["pythonpath"][0].startswith(user) and out["pythonpath"][0].endswith("backend_runtime")
    assert f"code: {out['pythonpath'][0]}/backend " in out["backend_log"]
    assert f"python: {out['blender_python']}" in out["backend_log"]
    assert "thunder-base" in out["backend_log"]  # the committed model, shipped in the zip
    print(
        f"plain Blender from the zip: Add Head (backend start included) {out['add_head_s']:.1f} s, "
        f"Generate 4 takes {out['generate_s']:.1f} s"
    )
