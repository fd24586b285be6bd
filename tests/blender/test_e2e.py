"""The installed add-on against a real backend subprocess: generate, keys equal the
backend's output resampled to the scene fps, takes, ownership, failures, reopen."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from .test_keying import quats, resampled

pytestmark = pytest.mark.blender
EXP_CHECK = [0, 3, 49]


def animate(backend, wav: str, **form) -> dict:
    """The backend's own answer for the same audio and options (multipart by hand, stdlib only)."""
    boundary = "testboundary"
    body = b""
    for k, v in form.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    body += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n'.encode()
        + open(wav, "rb").read()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        f"{backend['url']}/v1/animate",
        data=body,
        headers={
            "Authorization": f"Bearer {backend['token']}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    return json.loads(urllib.request.urlopen(req, timeout=120).read())


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return tmp_path_factory.mktemp("saved") / "keyed.blend"


FPS = ["23.976", "24", "25", "30", "60"]


@pytest.fixture(scope="module")
def generated(installed, backend, head_npz, wavs, saved):
    """Generate at every fps in one bpy process; 25 fps adds its head through the backend, 30 fps saves."""
    from .conftest import run_bpy_in

    return run_bpy_in(
        installed,
        "e2e",
        "generate_many",
        fps_list=FPS,
        save_fps="30",
        add_head_fps="25",
        save_as=str(saved),
        url=backend["url"],
        head_path=str(head_npz),
        wav=wavs["speech"],
        frame_start=5,
        takes=2,
        seed=11,
    )


@pytest.mark.parametrize("fps", FPS)
def test_generate_keys_match_backend(generated, backend, wavs, fps):
    out = generated[fps]
    assert out["state"] == "done", out["message"]
    takes = out["takes"]
    assert [t["seed"] for t in takes] == [11, 12]
    assert all(t["owned"] and t["fake_user"] for t in takes)
    assert [t["name"] for t in takes] == ["line s11", "line s12"]
    start, end = 0.0, (out["strip_frames"][1] - out["strip_frames"][0]) / out["fps"]
    ref = animate(
        backend,
        wavs["speech"],
        takes=2,
        seed=11,
        preset="draft",
        guidance=1.0,
        rank="false",
        encoding="json",
        start=round(start, 6),
        end=round(end, 6),
    )
    for take, want in zip(takes, ref["takes"]):
        exp25, jaw25 = np.array(want["exp"]), np.array(want["jaw"])
        np.testing.assert_allclose(np.array(take["exp25"]), exp25, atol=1e-5)
        assert take["score"] == pytest.approx(want["score"], abs=1e-4)
        assert take["duration"] == pytest.approx((len(exp25) - 1) / 25)
        want_exp = resampled(exp25, out["fps"])[:, EXP_CHECK]
        want_jaw = quats(resampled(jaw25, out["fps"]), np.array(out["to_bone"]))
        got_exp, got_jaw = np.array(take["exp_keys"]), np.array(take["jaw_keys"])
        np.testing.assert_array_equal(got_exp[0, :, 0], 5 + np.arange(len(want_exp)))  # from the strip's start
        np.testing.assert_allclose(got_exp[:, :, 1].T, want_exp, atol=1e-5)
        np.testing.assert_allclose(got_jaw[:, :, 1].T, want_jaw, atol=1e-5)
        assert take["frame_start"] == 5 and take["frame_end"] == 5 + len(want_exp) - 1
    # The best-scoring take plays; the scene range grew to hold it (never shrinks: it started at 1..12).
    best = max(range(len(takes)), key=lambda i: takes[i]["score"])
    assert out["shown"] == takes[best]["name"] and out["active_take"] == best
    assert out["range"] == [1, max(12, int(takes[0]["frame_end"]))]
    assert out["shown_after_pick"] == "line s12"
    k = out["evaluated_frame"] - 5
    np.testing.assert_allclose(out["evaluated_pick"], np.array(takes[1]["exp_keys"])[:, k, 1], atol=1e-5)


def test_reopen_saved_file(run_bpy, generated, saved):
    out = run_bpy("e2e", "reopen", path=str(saved))
    assert [t["name"] for t in out["takes"]] == ["line s11", "line s12"]
    assert all(t["owned"] for t in out["takes"])
    assert out["active_take"] == 1 and out["shown"] == "line s12"


def test_failures_leave_the_scene_as_it_was(run_bpy, backend, head_npz, wavs):
    out = run_bpy(
        "e2e",
        "failures",
        url=backend["url"],
        head_path=str(head_npz),
        wav=wavs["speech"],
        bad_wav=wavs["bad"],
        long_wav=wavs["long"],
    )
    assert out["bad_audio"]["state"] == "failed" and "bad_audio" in out["bad_audio"]["message"]
    assert out["bad_audio"]["same"]
    assert out["mismatch"]["state"] == "failed" and "Add THUNDER Head" in out["mismatch"]["message"]
    assert out["mismatch"]["same"]
    assert out["cancel"]["state"] == "cancelled" and out["cancel"]["same"]
    assert out["cancel"]["seconds_to_cancel"] < 3, out["cancel"]  # the socket closes; no waiting for the backend


def test_resample_listen_remove(run_bpy, backend, head_npz, wavs, tiny_bundle):
    has_m2s = "m2s" in json.loads((tiny_bundle / "manifest.json").read_text())["graphs"]
    out = run_bpy("e2e", "take_ops", url=backend["url"], head_path=str(head_npz), wav=wavs["speech"], listen=has_m2s)
    assert out["before"] == [["line s100", 100], ["line s101", 101], ["line s102", 102]]
    r = out["resample"]
    assert r["state"] == "done", r["message"]
    names = [n for n, _ in r["takes"]]
    assert names[0] == "line s100" and names[2] == "line s102" and r["takes"][1][1] not in (100, 101, 102)
    assert names[1] == f"line s{r['takes'][1][1]}" and r["old_gone"]
    if has_m2s:
        lst = out["listen"]
        assert lst["state"] == "done", lst["message"]
        assert lst["added"] == 1 and lst["strip"][0] == "line s100 M2S" and lst["strip"][1] == 10
        assert lst["strip"][2] != 1  # on a free channel, not over the dialogue
        import soundfile as sf

        data, rate = sf.read(lst["file"])
        assert rate == 16000 and len(data) > 0
    assert out["remove"]["keeper_kept"] and out["remove"]["first_gone"]
    assert out["remove"]["left"] == [names[1]]


def test_bundled_backend_starts_from_the_zip(run_bpy, installed, head_npz, wavs, tiny_bundle):
    import sys

    from tests.serve import free_port

    from .conftest import BPY_PYTHON

    # Blender's own Python runs the backend when it can (this venv's does); a Blender
    # without onnxruntime (THUNDER_BPY) is pointed at this venv, as Preferences › Python would.
    backend_python = "" if BPY_PYTHON == sys.executable else sys.executable
    out = run_bpy(
        "e2e",
        "bundled_backend",
        head_path=str(head_npz),
        wav=wavs["speech"],
        port=free_port(),
        backend_python=backend_python,
    )
    assert out["state"] == "done", out["message"]
    assert out["running"] and out["takes"] == 1
    # It ran the backend copied into the installed extension, not this checkout's.
    assert out["backend_root"].startswith(installed["BLENDER_USER_RESOURCES"])
    assert out["backend_root"].endswith("backend_runtime") and out["cmd"][1:5] == ["-P", "-m", "backend.cli", "serve"]
    # The checkout is Blender's working folder here: the code that served must still be the zip's.
    assert f"code: {out['backend_root']}/backend " in out["log"], out["log"]
    assert out["bundle"] == f"{out['backend_root']}/models/{tiny_bundle.name}"  # the model in the zip
    assert out["stopped"] and not out["answers_after_stop"]


def test_generate_is_one_undo_step(run_bpy, backend, head_npz, wavs):
    out = run_bpy("e2e", "undo_redo", url=backend["url"], head_path=str(head_npz), wav=wavs["speech"])
    assert out["state"] == "done", out["message"]
    assert out["changed"] and out["undo_restores"] and out["redo_restores"]
    assert out["takes_after_redo"] == ["line s7", "line s8"]
