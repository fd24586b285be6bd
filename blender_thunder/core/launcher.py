"""Start and stop the backend shipped inside the extension (`thunder serve`).

The extension zip carries the backend's pure-Python package and a model bundle
under `backend_runtime/`, and the backend's requirements as wheels that Blender
unpacks into the extensions' `.local/lib/pythonX.Y/site-packages` (see
tools/build_extension.py). So by default the backend runs on Blender's own
Python with those wheels. An environment of the user's own (Preferences ›
Python: e.g. one with onnxruntime-gpu for CUDA) runs it instead when set, and a
`thunder` command on PATH is the last resort. No bpy here.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .client import BackendError, Client

ADDON_DIR = Path(__file__).resolve().parent.parent
RUNTIME = ADDON_DIR / "backend_runtime"  # inside the built extension
CHECKOUT = ADDON_DIR.parent  # a source checkout: ../backend
# import name -> what to install (pip name) for each module the backend imports
NEEDS = {
    "onnxruntime": "onnxruntime",
    "numpy": "numpy",
    "soundfile": "soundfile",
    "soxr": "soxr",
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "multipart": "python-multipart",
}
# Imports each module and prints those that fail: run in the candidate Python itself.
PROBE = (
    "import importlib, sys\n"
    "missing = []\n"
    "for name in sys.argv[1:]:\n"
    "    try:\n"
    "        importlib.import_module(name)\n"
    "    except Exception:\n"
    "        missing.append(name)\n"
    "print('THUNDER-MISSING ' + ' '.join(missing))\n"
)

_proc: subprocess.Popen | None = None
_log_path: str | None = None
_complete: set = set()  # (python, PYTHONPATH) known to have every requirement
log = logging.getLogger(__name__)


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


def wheel_site_packages() -> list[str]:
    """Where Blender unpacked the extension's wheels: `<extensions>/.local/lib/pythonX.Y/
    site-packages`, beside the repository folder the extension is installed in."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [ADDON_DIR.parent.parent / ".local" / "lib" / version / "site-packages"]
    candidates += [
        Path(p) for p in sys.path if p.endswith("site-packages") and f"{os.sep}extensions{os.sep}.local{os.sep}" in p
    ]
    out: list[str] = []
    for c in candidates:
        if c.is_dir() and str(c) not in out:
            out.append(str(c))
    return out


def _env(paths: list[str]) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*paths, env.get("PYTHONPATH", "")]))
    env["PYTHONNOUSERSITE"] = "1"
    return env


def missing_requirements(python: str, env: dict) -> list[str] | None:
    """pip names of what `python` (with `env`) cannot import; None when it does not run.
    Only complete results are cached: packages installed later are found without a restart."""
    key = (python, env.get("PYTHONPATH", ""))
    if key in _complete:
        return []
    try:
        proc = subprocess.run([python, "-c", PROBE, *NEEDS], env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("THUNDER-MISSING")), None)
    if proc.returncode != 0 or line is None:
        return None
    missing = [NEEDS[m] for m in line.split()[1:]]
    if not missing:
        _complete.add(key)
    return missing


def command(python: str = "", bundle: str = "", port: int = 8765, device: str = "auto") -> tuple[list, dict]:
    """The command line and environment that start the bundled backend."""
    bundle_dir = Path(bundle) if bundle else default_bundle()
    if bundle_dir is None:
        raise BackendError("no_model", "no model bundle found: set Preferences › Model bundle")
    tail = ["serve", "--bundle", str(bundle_dir), "--port", str(int(port))]
    if device and device != "auto":
        tail += ["--device", device]
    root = backend_root()
    # `-P`: never import a `backend` from the working folder (Blender's may be a checkout
    # or anything else); only the one on PYTHONPATH runs.
    if python:
        # The user's own environment (e.g. onnxruntime-gpu): it must hold the requirements
        # itself; the extension's wheels are built for Blender's Python, not for it.
        env = _env([str(root)] if root else [])
        missing = missing_requirements(python, env)
        if missing is None:
            raise BackendError("no_python", f"Preferences › Python: {python} does not run")
        if missing:
            raise BackendError(
                "no_python",
                f"Preferences › Python: {python} lacks {', '.join(missing)}: "
                f"install with `{python} -m pip install {' '.join(missing)}`",
            )
        if root is not None:
            return [python, "-P", "-m", "backend.cli", *tail], env
    missing = None
    if root is not None and not python:
        env = _env([str(root), *wheel_site_packages()])
        missing = missing_requirements(sys.executable, env)
        if missing == []:
            return [sys.executable, "-P", "-m", "backend.cli", *tail], env
    thunder = shutil.which("thunder")
    if thunder:
        return [thunder, *tail], dict(os.environ)
    if root is None:
        raise BackendError(
            "no_backend",
            "this add-on carries no backend and no `thunder` command is on PATH: "
            "install the extension zip for your platform, or set Preferences › Backend URL",
        )
    lacks = f"lacks {', '.join(missing)}" if missing else "does not run"
    raise BackendError(
        "no_python",
        f"Blender's Python {lacks} (this extension's wheels are for another "
        f"platform or not installed): install the zip built for this platform, or set "
        f"Preferences › Python to a Python that has them, or run `thunder serve`",
    )


def start(python: str = "", bundle: str = "", port: int = 8765, device: str = "auto") -> subprocess.Popen:
    """Start the backend (no-op if ours is running). Output goes to a log file."""
    global _proc, _log_path
    if running():
        return _proc
    cmd, env = command(python, bundle, port, device)
    fd, _log_path = tempfile.mkstemp(prefix="thunder-backend-", suffix=".log")
    with os.fdopen(fd, "w") as out:
        _proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    log.info("started the backend (pid %d, log %s): %s", _proc.pid, _log_path, " ".join(cmd))
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
                log.error(
                    "the backend exited with %s; its log %s ends:\n%s", _proc.returncode, _log_path, log_tail(2000)
                )
                raise BackendError(
                    "backend_exited", f"the backend stopped (exit {_proc.returncode}): {log_tail(400).strip()}"
                ) from None
            if time.monotonic() > deadline or (cancel is not None and cancel.is_set):
                raise
            time.sleep(0.25)


def stop(timeout: float = 10.0) -> bool:
    """Stop the backend this add-on started (never one started by someone else)."""
    global _proc
    if _proc is None:
        return False
    if _proc.poll() is None:
        log.info("stopping the backend (pid %d)", _proc.pid)
        _proc.terminate()
        try:
            _proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _proc.kill()
            _proc.wait(5)
    _proc = None
    return True


atexit.register(stop)
