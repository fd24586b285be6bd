"""`thunder batch` over two .blend files, through the bpy module in a subprocess; its children
die with it (SIGKILL, SIGTERM), and a second batch on a file being keyed refuses it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from studio.batch import _healthy
from tests.serve import free_port

from .conftest import ROOT, batch, write_wav

pytestmark = pytest.mark.blender


def test_batch_two_files_then_resume(run_bpy, installed, backend, head_npz, wavs, tmp_path):
    a, b, c = tmp_path / "a.blend", tmp_path / "b.blend", tmp_path / "norig.blend"
    late = tmp_path / "late.wav"
    shutil.copy(wavs["other"], late)
    run_bpy(
        "files",
        "make_blends",
        head_path=str(head_npz),
        specs=[
            {"path": str(a), "wavs": [wavs["speech"], str(late)]},
            {"path": str(b), "wavs": [wavs["other"]]},
            {"path": str(c), "wavs": [wavs["other"]], "rig": False},
        ],
    )

    # Through the installed extension, as a farm would. a.blend's second strip has lost its
    # audio: that strip fails, the others are keyed and saved, and the exit code says so.
    late.rename(tmp_path / "away.wav")
    first = batch(
        installed,
        backend,
        a,
        b,
        "--takes",
        2,
        "--seed",
        5,
        "--preset",
        "draft",
        "--addon",
        "bl_ext.user_default.thunder",
    )
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
    assert sorted(f for _, _, f in got_a["line2"]) == [61.0, 61.0]  # placed at the strip's start

    # --force re-keys (new seed), replacing only the add-on's takes; a file without a rig fails loudly.
    forced = batch(installed, backend, b, c, "--takes", 1, "--seed", 40, "--force", "--preset", "draft")
    assert forced.returncode == 1
    assert "1 keyed, 0 skipped, 1 failed" in forced.stdout and "THUNDER rigs" in forced.stdout
    after = run_bpy("files", "inspect_many", paths=[str(a), str(b)])
    assert after[str(a)] == got_a  # untouched by the forced run
    assert [s for _, s, _ in after[str(b)]["line1"]] == [40]

    # --force with the same seed replaces the take in place: one take, its own name, no `.001` twin.
    again = batch(installed, backend, b, "--takes", 1, "--seed", 40, "--force", "--preset", "draft")
    assert again.returncode == 0 and "1 keyed" in again.stdout, again.stdout + again.stderr
    names = [n for n, _, _ in run_bpy("files", "inspect_many", paths=[str(b)])[str(b)]["line1"]]
    assert names == ["line1 s40"], names


# ---- children die with the batch; one batch per .blend ----


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) from /proc, None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "(comm)", which may hold spaces
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    st = _proc_stat(pid)
    return st is not None and st[0] not in "ZX"  # a zombie is dead (this sandbox's init may not reap)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children(pid: int) -> dict[int, str]:
    """The live children of `pid` and their command lines, by walking /proc."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            st = _proc_stat(int(d.name))
            if st is not None and st[1] == pid and st[0] not in "ZX":
                out[int(d.name)] = _cmdline(int(d.name))
    return out


def _wait_until(pred, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(step)
    return pred()


def _blender_child(pid: int) -> int | None:
    """The batch's Blender process (the bpy module in a Python: its command opens the .blend)."""
    return next((c for c, cmd in _children(pid).items() if "open_mainfile" in cmd), None)


def start_batch(env, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "batch", *map(str, args)],
        env=env,
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def long_blend(run_bpy, head_npz, tmp_path):
    """One strip of 200 s: keying it with 16 high-quality takes runs for tens of seconds."""
    path = tmp_path / "long.blend"
    wav = write_wav(tmp_path / "long.wav", 200.0, seed=3)
    run_bpy("files", "make_blends", head_path=str(head_npz), specs=[{"path": str(path), "wavs": [str(wav)]}])
    return path


@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="SIGKILL reaches the children on Linux only (PR_SET_PDEATHSIG); the test also reads /proc",
)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_killed_batch_takes_its_blender_and_backend_along(sig, installed, backend, tiny_bundle, long_blend, run_bpy):
    # --bundle at a port nobody serves: the batch starts its own backend, then Blender.
    url = f"http://127.0.0.1:{free_port()}"
    proc = start_batch(installed, long_blend, "--takes", 16, "--preset", "high", "--url", url, "--bundle", tiny_bundle)
    seen: set[int] = set()
    try:
        blender = _wait_until(lambda: _blender_child(proc.pid), 180)
        assert blender, f"no Blender child: {proc.poll()} {proc.stderr.read() if proc.poll() is not None else ''}"
        server = next((c for c, cmd in _children(proc.pid).items() if " serve " in cmd), None)
        assert server and "--bundle" in _cmdline(server), _children(proc.pid)
        seen |= {blender, server}
        time.sleep(2.0)  # well into the file: Blender up, keying
        assert _alive(blender) and _alive(server) and proc.poll() is None

        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=60)
        gone = _wait_until(lambda: not any(map(_alive, seen)), 5)
        assert gone, (
            f"still running after {signal.Signals(sig).name} of thunder batch: "
            f"{ {p: _cmdline(p)[:120] for p in seen if _alive(p)} }"
        )
        lock = long_blend.with_name(long_blend.name + ".thunder-lock")
        if sig == signal.SIGTERM:
            # Handled: children stopped, a clear non-zero exit, the lock released and its file gone.
            assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, out, err)
            assert "stopped by SIGTERM" in err, err
            assert not lock.exists()
        else:
            assert proc.returncode == -signal.SIGKILL
            # The killed batch could not clean up: its lock file stays, stale, and must not block a rerun.
            assert lock.exists()
        assert not _healthy(url)  # nothing answers where its backend was

        again = batch(installed, backend, long_blend, "--takes", 1, "--preset", "draft")
        assert again.returncode == 0 and "1 keyed, 0 skipped, 0 failed" in again.stdout, again.stdout + again.stderr
        assert not lock.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in seen:  # before the fix, orphans: don't leave them running
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_second_batch_on_the_same_file_is_refused(installed, backend, run_bpy, head_npz, wavs, tmp_path):
    a, b = tmp_path / "a.blend", tmp_path / "b.blend"
    wav = write_wav(tmp_path / "mid.wav", 120.0, seed=4)
    run_bpy(
        "files",
        "make_blends",
        head_path=str(head_npz),
        specs=[{"path": str(a), "wavs": [str(wav)]}, {"path": str(b), "wavs": [wavs["other"]]}],
    )

    first = start_batch(installed, a, "--takes", 8, "--preset", "high", "--url", backend["url"])
    try:
        # The lock is taken before Blender starts and held until it exits: once Blender runs, a.blend is taken.
        assert _wait_until(lambda: _blender_child(first.pid), 120), first.poll()
        second = batch(installed, backend, a, b, "--takes", 1, "--seed", 50, "--preset", "draft")
        out, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    # The second batch refuses a.blend with the reason, keys its other file, and says it failed.
    assert second.returncode == 1, second.stdout + second.stderr
    assert "locked by another thunder batch (pid " in second.stderr, second.stderr
    assert "1 keyed, 0 skipped, 1 failed" in second.stdout, second.stdout
    assert "failed: a.blend" in second.stdout and "locked by another thunder batch" in second.stdout
    # The first keys a.blend alone: its takes only (seeds 0..7), none of the second's (seed 50).
    assert first.returncode == 0 and "1 keyed, 0 skipped, 0 failed" in out, out + err
    got = run_bpy("files", "inspect_many", paths=[str(a), str(b)])
    assert sorted(s for _, s, _ in got[str(a)]["line1"]) == list(range(8))
    assert [s for _, s, _ in got[str(b)]["line1"]] == [50]
    assert not a.with_name("a.blend.thunder-lock").exists()
