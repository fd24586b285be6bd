"""What an artist sees, on the installed add-on: the rest face outside takes, keys that
follow the strip's Sound Offset, the jaw keyed in the rig's own rotation mode, an active
Action that hides the takes (and the operator that lets them play), blends between
takes, one take per seed, and Listen files that never overwrite another take's."""

from __future__ import annotations

import numpy as np
import pytest

from .test_e2e import animate

pytestmark = pytest.mark.blender


def test_rest_face_outside_takes(run_bpy, head_npz):
    out = run_bpy("artist_rules", "rest_face", head_path=str(head_npz))
    assert out["built_max"] == 0.0  # Add THUNDER Head: rest face (5.0 defaults to 1.0)
    # Before, after, between and right after takes: every exp key at rest, on every version.
    for frame, value in out["frames"].items():
        assert value < 1e-6, (frame, value, out["version"])
    assert out["inside"] > 0.05
    assert out["static_after_show"] == pytest.approx(0.45)  # showing a take sets no slider


def noise_wav(path, seconds: float = 2.0, rate: int = 48000):
    import soundfile as sf

    rng = np.random.default_rng(7)
    x = 0.2 * rng.standard_normal(int(seconds * rate))
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * np.arange(len(x)) / rate)
    sf.write(str(path), x.astype("float32"), rate, subtype="FLOAT")
    return x.astype("float32")


def heard_source_time(mix: np.ndarray, src: np.ndarray, scene_t: float, rate: int = 48000) -> float:
    """Which second of the source the mixdown plays at scene time `scene_t`."""
    seg = mix[int(round(scene_t * rate)) : int(round(scene_t * rate)) + 2400]
    c = np.correlate(src, seg, mode="valid")
    return int(np.argmax(c)) / rate


def test_sound_offset_keys_what_the_sequencer_plays(run_bpy, backend, head_npz, tmp_path):
    import soundfile as sf

    src = noise_wav(tmp_path / "noise.wav")
    mix_path = tmp_path / "mix.wav"
    out = run_bpy(
        "artist_rules",
        "sound_offset",
        url=backend["url"],
        head_path=str(head_npz),
        wav=str(tmp_path / "noise.wav"),
        mixdown=str(mix_path),
    )
    assert out["state"] == "done", out["message"]
    fps = 25.0
    # Sound Offset 0.5 s delays the sound inside the strip (strip at frame 5): it starts at frame 17.5,
    # so keys start at frame 18 with the audio 0.02 s in.
    assert out["frame_start"] == 18
    assert out["audio_start"] == pytest.approx(0.02, abs=1e-6)
    assert out["audio_end"] == pytest.approx(2.0 - 0.5, abs=1e-6)
    keys = np.array(out["keys0"])
    assert keys[0, 0] == 18
    # The keys are the backend's take for exactly that audio.
    ref = animate(
        backend,
        str(tmp_path / "noise.wav"),
        takes=1,
        seed=21,
        preset="draft",
        guidance=1.0,
        rank="false",
        encoding="json",
        start=round(out["audio_start"], 6),
        end=round(out["audio_end"], 6),
    )
    np.testing.assert_allclose(np.array(out["exp25"]), np.array(ref["takes"][0]["exp"]), atol=1e-5)
    # And that is what Blender's own mixdown plays at those frames.
    assert out["mixdown"] == ["FINISHED"]
    mix, rate = sf.read(str(mix_path), dtype="float32")
    mix = mix[:, 0] if mix.ndim > 1 else mix
    for frame in (18, 30, 45):
        scene_t = (frame - out["scene_frame_start"]) / fps
        heard = heard_source_time(mix, src, scene_t)
        assert heard == pytest.approx(out["audio_start"] + (frame - 18) / fps, abs=1e-3), frame
    infos = out["infos"]
    np.testing.assert_allclose(infos["-0.3 0"], [5, 0.3, 2.3], atol=1e-6)  # sound earlier: skip 0.3 s
    np.testing.assert_allclose(infos["-0.3 4"], [9, 0.46, 2.3], atol=1e-6)  # ... and trimmed
    np.testing.assert_allclose(infos["0.013 0"], [6, 0.027, 1.987], atol=1e-6)  # first whole frame after it starts
    np.testing.assert_allclose(infos["0.5 20"], [25, 0.3, 1.5], atol=1e-6)  # trimmed past the silence
    np.testing.assert_allclose(infos["absent"], [5, 0.0, 2.0], atol=1e-6)  # Blender without sound_offset
    assert "no audio" in infos["nothing"]


MODES = ["XYZ", "XZY", "ZYX", "AXIS_ANGLE", "QUATERNION"]


def test_jaw_keyed_in_the_rigs_rotation_mode(run_bpy, head_npz):
    out = run_bpy("artist_rules", "jaw_modes", head_path=str(head_npz), modes=MODES)
    path = {"AXIS_ANGLE": "rotation_axis_angle", "QUATERNION": "rotation_quaternion"}
    for mode in MODES:
        r = out[mode]
        assert r["mode_after"] == mode  # never switched
        assert r["paths"] == [f'pose.bones["jaw"].{path.get(mode, "rotation_euler")}'], mode
        assert r["meta_mode"] == mode
        assert r["max_err"] < 1e-4, (mode, r["max_err"])  # the same rotation as the take's
        assert r["max_step"] < 0.5, (mode, r["max_step"])  # Euler kept continuous (no 2 pi jumps)
        if mode != "QUATERNION":
            assert r["reshown_mode"] == mode
            assert r["reshown_paths"] == r["paths"]  # a stored take re-keyed in the jaw's mode
            assert r["reshown_err"] < 1e-4


def test_active_action_warning_and_arrange(run_bpy, head_npz):
    out = run_bpy("artist_rules", "active_action", head_path=str(head_npz))
    names = [w[1] for w in out["warnings"]]
    assert names == ["my face", "my body"]
    # The panel says so, by name, and offers the fix; afterwards it says nothing of it.
    labels = [text for kind, text, _ in out["panel_before"] if kind == "label"]
    assert any("'my face'" in t and "plays over the takes" in t for t in labels), labels
    assert any("'my body'" in t for t in labels)
    assert ["operator", "thunder.arrange_nla", ""] in out["panel_before"]
    assert not any(kind == "operator" and name == "thunder.arrange_nla" for kind, name, _ in out["panel_after"])
    assert not any("plays over the takes" in text for kind, text, _ in out["panel_after"] if kind == "label")
    # Before: the artist's active Action wins inside the take.
    at = out["artist_at"]
    assert out["before_inside"][0] == pytest.approx(at["40"], abs=1e-5)
    assert out["before_inside"][1] == pytest.approx(0.3, abs=1e-4)
    assert out["result"] == ["FINISHED"]
    # After: the take plays where it is, the artist's animation everywhere else.
    assert out["after_inside"][0] == pytest.approx(out["take_inside"], abs=1e-5)
    assert out["after_inside"][1] != pytest.approx(0.3, abs=1e-3)
    assert out["after_outside"][0] == pytest.approx(at["5"], abs=1e-5)
    assert out["after_outside"][1] == pytest.approx(0.3, abs=1e-4)
    assert out["after_late"][0] == pytest.approx(at["95"], abs=1e-5) and at["95"] == pytest.approx(0.35)
    assert out["warnings_after"] == []
    assert out["key_action"] is None and out["arm_action"] is None
    assert out["keys_same"]
    # The artist's Action sits right under the THUNDER track (above the rest track where there is one).
    assert out["key_tracks"][-2:] == ["my face", "THUNDER line"]
    assert out["arm_tracks"][-2:] == ["my body", "THUNDER line"]
    assert out["arm_tracks"].index("my body") == len(out["arm_tracks"]) - 2
    # One undo step brings everything back.
    assert out["undo_key_action"] == "my face" and "my face" not in out["undo_key_tracks"]


@pytest.mark.parametrize("fps", ["25", "60"])
def test_take_strips_blend(run_bpy, head_npz, fps):
    out = run_bpy("artist_rules", "blends", head_path=str(head_npz), fps=fps)
    f = out["fps"]
    for name, (f0, f1, b_in, b_out, auto) in out["strips"].items():
        length = f1 - f0
        want = min(0.1 * f, length / 4)
        assert b_in == pytest.approx(want, abs=1e-4) and b_out == pytest.approx(want, abs=1e-4), name
        assert not auto
    assert len(out["strips"]) == 4
    b = min(0.1 * f, (out["strips"]["key THUNDER long"][1] - out["strips"]["key THUNDER long"][0]) / 4)
    f0 = out["strips"]["key THUNDER long"][0]
    for frame, got, key in out["probe"]:
        w = min(1.0, (frame - f0) / b)
        assert got == pytest.approx(w * key, abs=1e-5), (frame, got, key, w)  # over the rest face (0)
    frame, got, key = out["probe_out"]
    f1 = out["strips"]["key THUNDER long"][1]
    assert got == pytest.approx(min(1.0, (f1 - frame) / b) * key, abs=1e-5)
    assert 0 < got < key


def test_same_seed_replaces_and_listen_files_are_per_take(run_bpy, backend, head_npz, wavs):
    out = run_bpy(
        "artist_rules",
        "same_seed",
        url=backend["url"],
        head_path=str(head_npz),
        wav=wavs["speech"],
        other_wav=wavs["other"],
    )
    assert out["first"]["state"] == "done", out["first"]["message"]
    assert out["first"]["names"] == ["line s5", "line s6"]
    again = out["again"]
    assert again["state"] == "done", again["message"]
    assert again["names"] == ["line s5", "line s6"] and again["owned"] == ["line s5", "line s6"]
    assert again["list_seeds"] == [5, 6]
    assert not [
        a for a in again["actions"] if a.startswith("line s") and a not in ("line s5", "line s6", "line s5.001")
    ]
    assert again["copy_kept"] and again["copy_same"]  # the artist's copy: untouched
    assert again["shown"] in ("line s5", "line s6")
    assert out["undo_actions_same"]  # one undo step
    nxt = out["next"]
    assert nxt["state"] == "done"
    assert nxt["names"] == ["line s5", "line s6", "line s7"] and nxt["owned"] == ["line s5", "line s6", "line s7"]
    lst = out["listen"]
    assert lst["files"][0] == lst["files"][1]  # the same take: the same file
    assert lst["other_name"] == "line s5" and lst["other"] != lst["files"][0]
    assert lst["first_unchanged"]


def test_panel_rekeys_a_take_keyed_in_another_jaw_mode(run_bpy, head_npz):
    out = run_bpy("artist_rules", "stale_jaw", head_path=str(head_npz))
    stale = "This take's jaw was keyed in another rotation mode"
    assert any(text == stale for kind, text, _ in out["panel_before"] if kind == "label")
    assert ["operator", "thunder.use_take", "Re-key Jaw"] in out["panel_before"]
    assert out["result"] == ["FINISHED"] and out["mode"] == "YZX"
    assert out["paths"] == ['pose.bones["jaw"].rotation_euler']
    assert not any(text == stale for kind, text, _ in out["panel_after"] if kind == "label")
    assert ["label", "Jaw keyed in its own mode: YZX Euler", "BONE_DATA"] in out["panel_after"]
