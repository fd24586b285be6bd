"""The legacy Action API (Blender 4.2 LTS: `Action.fcurves`, one Action per datablock).

Not in CI: runs when THUNDER_BPY_LTS names a Python with `bpy` 4.2 installed
(`python3.11 -m venv /tmp/bpy42 && /tmp/bpy42/bin/pip install "bpy>=4.2,<4.3" "numpy<2"`).
bpy 4.2 from PyPI has no audio, so only the keying and ownership checks run there.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from .conftest import run_bpy_in
from .test_keying import blended, quats, reference_take, resampled

LTS = os.environ.get("THUNDER_BPY_LTS", "")
pytestmark = [pytest.mark.blender, pytest.mark.skipif(not LTS, reason="set THUNDER_BPY_LTS to a Python with bpy 4.2")]


@pytest.fixture(scope="module")
def lts_env(tmp_path_factory):
    from build_extension import build, host_platform

    base = tmp_path_factory.mktemp("lts")
    # no model needed: no backend on 4.2 (no audio)
    extension_zip = build(base / "dist", bundle=None, platforms=[host_platform()])[host_platform()]
    env = dict(
        os.environ,
        BLENDER_USER_RESOURCES=str(base / "user"),
        HOME=str(base / "home"),
        XDG_CONFIG_HOME=str(base / "config"),
    )
    for d in ("user", "home", "config"):
        (base / d).mkdir()
    out = run_bpy_in(env, "install", "install", python=LTS, zip_path=str(extension_zip), _enable=False)
    assert out["result"] == ["FINISHED"]
    return env


@pytest.mark.parametrize("fps", ["23.976", "30"])
def test_legacy_keys(lts_env, head_npz, fps):
    n, start, seed = 40, 7, 3
    out = run_bpy_in(
        lts_env,
        "keying",
        "keys_at_fps",
        python=LTS,
        head_path=str(head_npz),
        fps=fps,
        n_frames=n,
        frame_start=start,
        seed=seed,
    )
    assert out["version"][:2] == [4, 2] and not out["slotted"]
    assert out["n_actions"] == 2 and out["n_curves"] == 50 and out["name"] == "line s3" and out["owned"]
    exp, jaw = reference_take(seed, n)
    fps_f = {"23.976": 24 / 1.001}.get(fps, float(fps))
    want_exp = resampled(exp, fps_f)[:, [0, 17, 49]]
    want_jaw = quats(resampled(jaw, fps_f), np.array(out["to_bone"]))
    np.testing.assert_allclose(np.array(out["exp"])[:, :, 1].T, want_exp, atol=1e-5)
    np.testing.assert_allclose(np.array(out["jaw"])[:, :, 1].T, want_jaw, atol=1e-5)
    rest = np.array([0.0] * want_exp.shape[1] + [1.0, 0.0, 0.0, 0.0])  # take strips blend in / out
    np.testing.assert_allclose(
        np.array(out["evaluated"]),
        blended(np.concatenate([want_exp, want_jaw], 1), rest, fps_f, start + np.arange(len(want_exp))),
        atol=1e-5,
    )


def test_legacy_ownership(lts_env, head_npz):
    out = run_bpy_in(lts_env, "keying", "ownership", python=LTS, head_path=str(head_npz))
    assert out["owned"] and not out["artist_owned"] and not out["copy_owned"]
    assert out["artist_still_active"] and out["artist_keys_same"] and out["removed"]
