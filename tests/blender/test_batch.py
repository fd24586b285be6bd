"""`thunder batch` over two .blend files, through the bpy module in a subprocess."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.blender


def batch(env, backend, *args):
    return subprocess.run([sys.executable, "-m", "backend.cli", "batch", *map(str, args), "--url", backend["url"]],
                          env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=300)


def test_batch_two_files_then_resume(run_bpy, installed, backend, head_npz, wavs, tmp_path):
    a, b, c = tmp_path / "a.blend", tmp_path / "b.blend", tmp_path / "norig.blend"
    late = tmp_path / "late.wav"
    shutil.copy(wavs["other"], late)
    run_bpy("files", "make_blends", head_path=str(head_npz), specs=[
        {"path": str(a), "wavs": [wavs["speech"], str(late)]}, {"path": str(b), "wavs": [wavs["other"]]},
        {"path": str(c), "wavs": [wavs["other"]], "rig": False}])

    # Through the installed extension, as a farm would. a.blend's second strip has lost its
    # audio: that strip fails, the others are keyed and saved, and the exit code says so.
    late.rename(tmp_path / "away.wav")
    first = batch(installed, backend, a, b, "--takes", 2, "--seed", 5, "--preset", "draft",
                  "--addon", "bl_ext.user_default.thunder")
    assert first.returncode == 1, first.stdout + first.stderr
    assert "2 keyed, 0 skipped, 1 failed" in first.stdout and "not found" in first.stdout
    got = run_bpy("files", "inspect_many", paths=[str(a), str(b)])
    assert sorted(got[str(a)]) == ["line1"] and sorted(got[str(b)]) == ["line1"]
    assert sorted(s for _, s, _ in got[str(a)]["line1"]) == [5, 6]

    # The audio is back: a rerun resumes where it failed, skipping what was keyed and saved
    # (the checkout's add-on this time).
    (tmp_path / "away.wav").rename(late)
    again = batch(installed, backend, a, b, "--takes", 2, "--seed", 5, "--preset", "draft")
    assert again.returncode == 0 and "1 keyed, 2 skipped, 0 failed" in again.stdout, again.stdout + again.stderr
    got = run_bpy("files", "inspect_many", paths=[str(a), str(b)])
    got_a = got[str(a)]
    assert sorted(got_a) == ["line1", "line2"]
    assert sorted(f for _, _, f in got_a["line2"]) == [61.0, 61.0]   # placed at the strip's start

    # --force re-keys (new seed), replacing only the add-on's takes; a file without a rig fails loudly.
    forced = batch(installed, backend, b, c, "--takes", 1, "--seed", 40, "--force", "--preset", "draft")
    assert forced.returncode == 1
    assert "1 keyed, 0 skipped, 1 failed" in forced.stdout and "THUNDER rigs" in forced.stdout
    after = run_bpy("files", "inspect_many", paths=[str(a), str(b)])
    assert after[str(a)] == got_a                                   # untouched by the forced run
    assert [s for _, s, _ in after[str(b)]["line1"]] == [40]
