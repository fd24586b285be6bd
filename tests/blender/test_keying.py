"""Keys written from arrays: resampled 25 fps -> scene fps, on Blender 5.0's slotted actions."""

from __future__ import annotations

import numpy as np
import pytest

from .scenarios.takes import take_arrays

pytestmark = pytest.mark.blender


def reference_take(seed: int, n_frames: int):
    """scenarios/common.synthetic_take's arrays, computed outside Blender."""
    exp, jaw = take_arrays(seed, n_frames)
    return exp.astype(np.float64), jaw.astype(np.float64)


def resampled(values: np.ndarray, fps: float) -> np.ndarray:
    duration = (len(values) - 1) / 25.0
    t = np.arange(int(np.floor(duration * fps + 1e-6)) + 1) / fps
    return np.stack([np.interp(t, np.arange(len(values)) / 25.0, v) for v in values.T], axis=1)


def quats(aa: np.ndarray, to_bone: np.ndarray) -> np.ndarray:
    aa = aa @ to_bone.T
    angle = np.linalg.norm(aa, axis=1)
    axis = aa / np.where(angle > 0, angle, 1)[:, None]
    return np.concatenate([np.cos(angle / 2)[:, None], axis * np.sin(angle / 2)[:, None]], axis=1)


def blended(keys: np.ndarray, rest: np.ndarray, fps: float, frames: np.ndarray) -> np.ndarray:
    """What the NLA plays from a take strip keyed on `frames`: its blend in / out (0.1 s, at most
    a quarter of the strip) mixes linearly with the rest pose (exp 0, the unit quaternion)."""
    f0, f1 = frames[0], frames[-1]
    b = min(0.1 * fps, (f1 - f0) / 4)
    w = np.clip(np.minimum((frames - f0) / b, (f1 - frames) / b), 0.0, 1.0)[:, None]
    return w * keys + (1 - w) * rest


FPS = ["23.976", "24", "25", "30", "60"]
N, START, SEED = 40, 7, 3


@pytest.fixture(scope="module")
def keyed(installed, head_npz):
    from .conftest import run_bpy_in

    return run_bpy_in(
        installed,
        "keying",
        "keys_at_many",
        head_path=str(head_npz),
        fps_list=FPS,
        n_frames=N,
        frame_start=START,
        seed=SEED,
    )


@pytest.mark.parametrize("fps", FPS)
def test_keys_equal_resampled_arrays(keyed, fps):
    n, start, seed = N, START, SEED
    out = keyed[fps]
    exp, jaw = reference_take(seed, n)
    scene_fps = {"23.976": 24 / 1.001}.get(fps, float(fps))
    assert out["fps"] == pytest.approx(scene_fps)
    want_exp = resampled(exp, scene_fps)[:, [0, 17, 49]]
    want_jaw = quats(resampled(jaw, scene_fps), np.array(out["to_bone"]))
    got_exp = np.array(out["exp"])  # (3 curves, N, [frame, value])
    got_jaw = np.array(out["jaw"])  # (4 curves, N, [frame, value])
    assert got_exp.shape[1] == len(want_exp)
    frames = start + np.arange(len(want_exp))
    np.testing.assert_array_equal(got_exp[0, :, 0], frames)  # one key per scene frame, from the start
    np.testing.assert_allclose(got_exp[:, :, 1].T, want_exp, atol=1e-5)
    np.testing.assert_allclose(got_jaw[:, :, 1].T, want_jaw, atol=1e-5)
    # What Blender evaluates through the NLA is the same, blending in and out at the ends.
    rest = np.array([0.0] * want_exp.shape[1] + [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(
        np.array(out["evaluated"]), blended(np.concatenate([want_exp, want_jaw], 1), rest, scene_fps, frames), atol=1e-5
    )
    assert out["slotted"] and out["n_actions"] == 1 and out["n_curves"] == 54
    assert out["name"] == f"line s{seed}" and out["owned"]
    assert out["frame_range"][1] == 10  # create() alone does not touch the scene range


def test_ownership_rules(run_bpy, head_npz):
    out = run_bpy("keying", "ownership", head_path=str(head_npz))
    assert out["owned"] and not out["artist_owned"] and not out["copy_owned"]
    assert len(out["refused"]) == 2 and "line s5.001" in out["refused"]
    assert out["artist_still_active"] and out["artist_keys_same"]
    # Blender 5.0's NLA rests shape keys at 1.0: there a rest track lies under the take's track.
    assert out["tracks"] == (["THUNDER rest face", "THUNDER line"] if out["rest_needed"] else ["THUNDER line"])
    assert not out["renamed_owned"] and out["renamed_back_owned"]
    assert out["range_kept"] == [1, 500]  # never shortened
    assert out["range_grown"] == [1, 70]
    assert out["removed"]
    assert "line s5" not in out["actions_left"] and len(out["actions_left"]) == 2  # artist's + the copy


def test_head_id_of_a_rig(run_bpy, head_npz):
    out = run_bpy("keying", "head_ids", head_path=str(head_npz))
    want = str(np.load(head_npz)["head_id"])
    assert out["recorded"] == want and out["computed"] == want
    assert out["edited"] != want and "Add THUNDER Head" in out["refused"]


def test_add_head_from_a_flame_folder(run_bpy, head_dir, tmp_path):
    (tmp_path / "FLAME_NEUTRAL.pkl").write_bytes(b"licensed FLAME would be here")
    out = run_bpy("keying", "flame_folder", head_dir=str(head_dir), pkl_only_dir=str(tmp_path))
    assert out["result"] == ["FINISHED"] and out["n_rigs"] == 1
    assert out["head_id"] == str(np.load(head_dir / "head.npz")["head_id"])
    assert "thunder-train head import --flame" in out["refused"] and "FLAME_NEUTRAL.pkl" in out["refused"]
