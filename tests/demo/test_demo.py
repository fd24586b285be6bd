"""`thunder-train demo` end to end against a tiny real (random-weight) bundle:
head, backend subprocess, keyed takes through the add-on's headless path,
demo.blend and preview.mp4 with video and audio."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from studio.demo import DEMO_WAV, _resolution, find_bundle

ROOT = Path(__file__).resolve().parent.parent.parent
FRAMES, SIZE, TAKES = 10, (96, 80), 3

# Runs in a fresh bpy process: what the saved file holds.
INSPECT = """
import bpy, json, sys
bpy.ops.wm.open_mainfile(filepath=sys.argv[1])
scene = bpy.data.scenes[0]
takes = [dict(a["thunder_take"].to_dict(), action=a.name) for a in bpy.data.actions if "thunder_take" in a]
key = next(o for o in bpy.data.objects if o.type == "MESH" and o.data.shape_keys).data.shape_keys
# The takes' tracks (Blender 5.0 adds a "THUNDER rest face" track below them: the face between takes).
tracks = [t.strips[0].action.name for t in key.animation_data.nla_tracks
          if t.name != "THUNDER rest face"] if key.animation_data else []
sounds = [s.name for s in scene.sequence_editor.strips_all if s.type == "SOUND"]
print("INSPECT" + json.dumps({"takes": [{k: t[k] for k in ("action", "seed", "score", "strip")} for t in takes],
                              "tracks": tracks, "sounds": sounds, "fps": scene.render.fps,
                              "res": [scene.render.resolution_x, scene.render.resolution_y]}))
"""


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("demo_sandbox")
    env = dict(
        os.environ,
        XDG_CONFIG_HOME=str(base / "config"),
        HOME=str(base / "home"),
        BLENDER_USER_RESOURCES=str(base / "blender_user"),
        PYTHONNOUSERSITE="1",
    )
    env.pop("THUNDER_BUNDLE", None)
    for d in ("config", "home", "blender_user"):
        (base / d).mkdir()
    return env


def run_in(sandbox: dict, cmd: list, timeout: float) -> subprocess.CompletedProcess:
    """`cmd` in the sandbox's environment from the repository root, its output captured."""
    return subprocess.run(cmd, env=sandbox, cwd=str(ROOT), capture_output=True, text=True, timeout=timeout)


def thunder_demo(sandbox: dict, out: Path, bundle: Path, *args, timeout: float = 240) -> subprocess.CompletedProcess:
    """`thunder-train demo --out OUT --bundle BUNDLE ARGS` in a fresh process in the sandbox."""
    cmd = [sys.executable, "-m", "training.cli", "demo", "--out", str(out), "--bundle", str(bundle), *map(str, args)]
    return run_in(sandbox, cmd, timeout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, sandbox, tiny_bundle) -> dict:
    out = tmp_path_factory.mktemp("demo_out")
    proc = thunder_demo(
        sandbox, out, tiny_bundle, "--frames", FRAMES, "--resolution", "x".join(map(str, SIZE)), "--takes", TAKES
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"out": out, "stdout": proc.stdout}


def test_speech_sample_is_small_16k_mono_speech():
    info = sf.info(str(DEMO_WAV))
    assert (info.samplerate, info.channels) == (16000, 1)
    assert 3.0 < info.duration < 6.0 and DEMO_WAV.stat().st_size < 200_000
    audio, _ = sf.read(str(DEMO_WAV))
    assert np.abs(audio).max() > 0.3  # not silence


def test_bundle_lookup(tmp_path, monkeypatch, tiny_bundle):
    monkeypatch.delenv("THUNDER_BUNDLE", raising=False)
    assert find_bundle(str(tiny_bundle)) == tiny_bundle
    with pytest.raises(SystemExit, match="manifest.json missing"):
        find_bundle(str(tmp_path))
    monkeypatch.setenv("THUNDER_BUNDLE", str(tiny_bundle))
    assert find_bundle(None) == tiny_bundle


@pytest.mark.parametrize("bad", ["480", "abcx10", "101x100", "8x8"])
def test_resolution_rejects_bad_input(bad):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        _resolution(bad)


def test_demo_blend_holds_keyed_takes(demo, sandbox):
    out = demo["out"]
    assert (out / "head_poses.png").is_file() and not (out / "demo.blend1").exists()
    proc = run_in(sandbox, [sys.executable, "-c", INSPECT, str(out / "demo.blend")], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.split("INSPECT", 1)[1].splitlines()[0])
    assert info["sounds"] == ["speech"] and info["fps"] == 25 and info["res"] == list(SIZE)
    takes = info["takes"]
    assert sorted(t["seed"] for t in takes) == list(range(TAKES)) and {t["strip"] for t in takes} == {"speech"}
    best = max(takes, key=lambda t: t["score"])
    assert info["tracks"] == [best["action"]]  # the best take is the one that plays
    # the printed summary names the same best take and score as the file
    assert re.search(
        rf"{re.escape(best['action'])}\s+seed {best['seed']}\s+lip-sync score {best['score']:.3f}"
        r"\s+<- best",
        demo["stdout"],
    )


def test_preview_has_video_audio_and_burnt_label(demo):
    import imageio_ffmpeg

    mp4 = demo["out"] / "preview.mp4"
    probe = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(mp4)], capture_output=True, text=True
    ).stderr
    assert re.search(rf"Video: h264.*{SIZE[0]}x{SIZE[1]}.*25 fps", probe), probe
    assert re.search(r"Audio: aac.*16000 Hz, mono", probe), probe
    n_frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(mp4))
    assert n_frames == FRAMES and abs(seconds - FRAMES / 25) < 0.1
    reader = imageio_ffmpeg.read_frames(str(mp4))
    meta = next(reader)
    frame = np.frombuffer(next(reader), np.uint8).reshape(meta["size"][1], meta["size"][0], 3)
    reader.close()
    band, face = frame[-8:].mean(-1), frame[: SIZE[1] // 2].mean(-1)
    assert np.median(band) < 40 and band.max() > 150  # white text on the black label band
    assert np.median(face) > 40  # the head is above it, lit
    from PIL import Image

    strip = Image.open(demo["out"] / "preview_strip.png")
    assert strip.height == 240 and strip.width == 6 * round(SIZE[0] * 240 / SIZE[1])  # six stills side by side


def test_takes_side_by_side_and_their_lip_gap(demo):
    """Every take at the same frames (one row each) and the lip-gap plot with the pseudo-GT."""
    from PIL import Image

    from studio.take_figures import SHEET_FRAMES

    sheet = Image.open(demo["out"] / "takes_sheet.png")
    assert sheet.size == (SHEET_FRAMES * SIZE[0], TAKES * (SIZE[1] + 22))
    rows = np.asarray(sheet.convert("L"), np.float32).reshape(TAKES, SIZE[1] + 22, -1)[:, : SIZE[1]]
    assert all(np.abs(rows[0] - r).mean() > 0.05 for r in rows[1:])  # random-weight takes differ
    assert Image.open(demo["out"] / "lip_gap.png").size[0] > 600
    assert "takes side by side" in demo["stdout"] and not list(demo["out"].glob(".takes_sheet*"))


def test_without_a_bundle_saves_the_rig_and_says_how_to_make_one(tmp_path, sandbox):
    # The shipped bundle's place points at an empty folder: the demo must fall back, not fail.
    code = (
        "import sys, pathlib, backend.bundle as s; s.DEFAULT_BUNDLE = pathlib.Path(sys.argv[1]); "
        "from training.cli import main; sys.exit(main(['demo', '--out', sys.argv[2]]))"
    )
    out = tmp_path / "out"
    proc = run_in(sandbox, [sys.executable, "-c", code, str(tmp_path / "no-bundle"), str(out)], timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if "needs a model bundle" in line]
    assert len(lines) == 1 and "thunder-train export" in lines[0]
    assert (out / "demo.blend").is_file() and (out / "head_poses.png").is_file()
    assert not (out / "preview.mp4").exists()


def test_backend_is_stopped_when_keying_fails(tmp_path, sandbox, tiny_bundle):
    import urllib.request

    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really a wav file" * 10)
    proc = thunder_demo(sandbox, tmp_path / "out", tiny_bundle, "--audio", bad, "--resolution", "64x64", timeout=180)
    assert proc.returncode != 0 and "thunder-train demo:" in proc.stderr + proc.stdout
    url = re.search(r"\[demo\] backend: .* on (http://127\.0\.0\.1:\d+)", proc.stdout).group(1)
    with pytest.raises(OSError):  # nothing answers there any more
        urllib.request.urlopen(f"{url}/v1/health", timeout=2)


@pytest.mark.slow
def test_make_demo_on_the_committed_bundle(tmp_path, sandbox):
    """The README's main job, `make demo`, on the bundle that ships (no --bundle), with a
    short preview: a change that breaks what users run first cannot land."""
    out = tmp_path / "demo"
    proc = run_in(
        sandbox,
        [
            "make",
            "--no-print-directory",
            "demo",
            f"DEMO_OUT={out}",
            f"DEMO_ARGS=--frames {FRAMES} --resolution {SIZE[0]}x{SIZE[1]} --takes 2",
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "backend/models/thunder-base" in proc.stdout  # the committed bundle served the takes
    assert re.search(r"seed \d+\s+lip-sync score [0-9.]+\s+<- best", proc.stdout), proc.stdout[-2000:]
    for name in ("demo.blend", "preview.mp4", "preview_strip.png", "head_poses.png", "takes_sheet.png", "lip_gap.png"):
        assert (out / name).is_file(), name
    n_frames, _ = __import__("imageio_ffmpeg").count_frames_and_secs(str(out / "preview.mp4"))
    assert n_frames == FRAMES
