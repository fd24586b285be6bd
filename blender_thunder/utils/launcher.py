"""Start and stop the backend shipped inside the extension (`thunder serve`).

The extension zip carries the backend's pure-Python package and a model bundle
under `backend_runtime/` (see tools/build_extension.py). They run in a Python
that has onnxruntime and the backend's other requirements: the one set in the
preferences, else Blender's own if it has them, else the `thunder` command,
else `python3`. GPU users point that at an environment with onnxruntime-gpu, or
the backend URL at a backend they run themselves. No bpy here.
"""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from .client import BackendError, Client

ADDON_DIR = Path(__file__).resolve().parent.parent
RUNTIME = ADDON_DIR / "backend_runtime"          # inside the built extension
CHECKOUT = ADDON_DIR.parent                      # a source checkout: ../backend
NEEDS = ("onnxruntime", "numpy", "soundfile", "soxr", "fastapi", "uvicorn", "multipart")

_proc: subprocess.Popen | None = None
_log_path: str | None = None


def backend_root() -> Path | None:
    """Folder holding the `backend` package to run, or None."""
    for root in (RUNTIME, CHECKOUT):
        if (root / "backend" / "cli.py").is_file():
            return root
    return None


def default_bundle() -> Path | None:
    for models in (RUNTIME / "models", CHECKOUT / "backend" / "models"):
        if models.is_dir():
            for d in sorted(models.iterdir()):
                if (d / "manifest.json").is_file():
                    return d
    return None


@lru_cache(maxsize=8)
def _has_requirements(python: str) -> bool:
    code = "import " + ", ".join(NEEDS)
    try:
        return subprocess.run([python, "-c", code], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def command(python: str = "", bundle: str = "", port: int = 8765, device: str = "auto") -> tuple[list, dict]:
    """The command line and environment that start the bundled backend."""
    bundle_dir = Path(bundle) if bundle else default_bundle()
    if bundle_dir is None:
        raise BackendError("no_model", "no model bundle found: set Preferences › Model bundle")
    tail = ["serve", "--bundle", str(bundle_dir), "--port", str(int(port))]
    if device and device != "auto":
        tail += ["--device", device]
    env = dict(os.environ)
    root = backend_root()
    if python or root is not None:
        candidates = [python] if python else [sys.executable, shutil.which("python3") or ""]
        for py in filter(None, candidates):
            if root is not None and _has_requirements(py):
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
                env["PYTHONNOUSERSITE"] = "1"
                return [py, "-m", "backend.cli", *tail], env
        if python:
            raise BackendError("no_python", f"{python} cannot run the backend: it needs {', '.join(NEEDS)}")
    thunder = shutil.which("thunder")
    if thunder:
        return [thunder, *tail], env
    raise BackendError("no_python", "no Python with onnxruntime found to run the backend: set "
                                    "Preferences › Python (or install the backend: pip install thunder-blender)")


def start(python: str = "", bundle: str = "", port: int = 8765, device: str = "auto") -> subprocess.Popen:
    """Start the backend (no-op if ours is running). Output goes to a log file."""
    global _proc, _log_path
    if running():
        return _proc
    cmd, env = command(python, bundle, port, device)
    fd, _log_path = tempfile.mkstemp(prefix="thunder-backend-", suffix=".log")
    with os.fdopen(fd, "w") as log:
        _proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
    return _proc


def running() -> bool:
    return _proc is not None and _proc.poll() is None


def log_tail(n: int = 2000) -> str:
    if not _log_path or not os.path.exists(_log_path):
        return ""
    with open(_log_path, errors="replace") as fh:
        return fh.read()[-n:]


def wait_ready(client: Client, timeout: float = 60.0, cancel=None) -> dict:
    """Poll /v1/health until it answers (thread-safe; no bpy)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.health()
        except BackendError:
            if _proc is not None and _proc.poll() is not None:
                raise BackendError("backend_exited", f"the backend stopped (exit {_proc.returncode}): "
                                                     f"{log_tail(400).strip()}") from None
            if time.monotonic() > deadline or (cancel is not None and cancel.is_set):
                raise
            time.sleep(0.25)


def stop(timeout: float = 10.0) -> bool:
    """Stop the backend this add-on started (never one started by someone else)."""
    global _proc
    if _proc is None:
        return False
    if _proc.poll() is None:
        _proc.terminate()
        try:
            _proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _proc.kill()
            _proc.wait(5)
    _proc = None
    return True


atexit.register(stop)
