"""The add-on's launcher picks the Python that runs the bundled backend: its messages
name only what is missing, and packages installed later are found without a restart
(the launcher is bpy-free, so it runs here as it does inside Blender)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from blender_thunder.core import launcher
from blender_thunder.core.client import BackendError


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    return str(venv / "bin" / "python")


def _pin(name: str) -> str:
    from tests.blender.conftest import ROOT

    return next(
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.lower().startswith(name + "==")
    )


def test_message_names_only_what_is_missing_and_sees_later_installs(bare_python):
    with pytest.raises(BackendError) as err:
        launcher.command(python=bare_python, port=9)
    message = str(err.value)
    for name in ("onnxruntime", "numpy", "soundfile", "soxr", "fastapi", "uvicorn", "python-multipart"):
        assert name in message
    assert "thunder-blender" not in message  # no package of that name exists
    assert f"{bare_python} -m pip install" in message
    # The artist installs two of them into that Python, in the same Blender session.
    subprocess.run(
        [bare_python, "-m", "pip", "install", "-q", "--disable-pip-version-check", _pin("numpy"), _pin("soxr")],
        check=True,
        capture_output=True,
    )
    with pytest.raises(BackendError) as err:
        launcher.command(python=bare_python, port=9)
    message = str(err.value)
    assert "soxr" not in message and "numpy" not in message
    assert "onnxruntime" in message and "python-multipart" in message


def test_a_complete_python_runs_the_backend_without_the_working_folder():
    cmd, env = launcher.command(python=sys.executable, port=9)
    assert cmd[:4] == [sys.executable, "-P", "-m", "backend.cli"]
    assert env["PYTHONPATH"].split(":")[0] == str(launcher.backend_root())
    assert launcher.missing_requirements(sys.executable, env) == []


def test_a_python_that_does_not_run_is_named(tmp_path):
    with pytest.raises(BackendError, match="does not run"):
        launcher.command(python=str(tmp_path / "nope"), port=9)
