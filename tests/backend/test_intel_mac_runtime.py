"""Intel Macs get onnxruntime 1.23.2 in their zip (the last release with a macOS
x86_64 wheel; tools/extension_wheels.toml). The same release exists for Linux, so
here it runs the shipped bundle and must give the takes the tested runtime gives."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys, numpy as np, soundfile as sf
sys.path.insert(0, sys.argv[1])
from backend.engine import Engine
audio, _ = sf.read(sys.argv[1] + '/assets/speech/demo.wav', dtype='float32')
takes = Engine(sys.argv[1] + '/backend/models/thunder-base', device='cpu', threads=2).animate(
    audio, takes=2, seed=0).takes
np.savez(sys.argv[2], exp=np.stack([t.exp for t in takes]), jaw=np.stack([t.jaw for t in takes]),
         score=[t.score for t in takes])
"""


@pytest.mark.slow
def test_intel_mac_onnxruntime_gives_the_same_takes(tmp_path):
    config = tomllib.loads((ROOT / "tools" / "extension_wheels.toml").read_text())
    ort = f"onnxruntime=={config['platforms']['macos-x64']['override']['onnxruntime']}"
    pins = [r for r in config["requirements"] if r.split("==")[0] in ("soundfile", "soxr", "cffi", "pycparser")]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", ort, "numpy==1.26.4", *pins],
        check=True,
        capture_output=True,
    )
    for python, out in ((py, tmp_path / "old.npz"), (sys.executable, tmp_path / "new.npz")):
        proc = subprocess.run([python, "-c", SCRIPT, str(ROOT), str(out)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
    old, new = np.load(tmp_path / "old.npz"), np.load(tmp_path / "new.npz")
    for k in ("exp", "jaw", "score"):
        np.testing.assert_allclose(old[k], new[k], atol=1e-5, err_msg=k)  # measured 6e-7 (2026-11-28)
