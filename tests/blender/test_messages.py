"""Backend replies are validated before anything touches the scene (pure Python, no bpy)."""

from __future__ import annotations

import base64
import importlib.util
import math

import numpy as np
import pytest


messages = importlib.import_module("blender_thunder.core.messages")
resample = importlib.import_module("blender_thunder.core.resample")


def reply(n=10, takes=2, **take_overrides):
    rng = np.random.default_rng(0)
    out = {"fps": 25, "n_frames": n, "duration": (n - 1) / 25, "takes": []}
    for i in range(takes):
        t = {
            "seed": 3 + i,
            "score": 0.5,
            "exp": rng.standard_normal((n, 50)).tolist(),
            "jaw": rng.standard_normal((n, 3)).tolist(),
        }
        t.update(take_overrides)
        out["takes"].append(t)
    return out


def test_good_reply_json_and_b64_agree():
    r = reply()
    takes, meta = messages.parse_animate(r, expect_takes=2)
    assert [t.seed for t in takes] == [3, 4] and takes[0].exp.shape == (10, 50) and meta["n_frames"] == 10
    b64 = {
        **r,
        "takes": [
            {
                "seed": t.seed,
                "score": t.score,
                "exp_b64": base64.b64encode(t.exp.astype("<f4").tobytes()).decode(),
                "jaw_b64": base64.b64encode(t.jaw.astype("<f4").tobytes()).decode(),
            }
            for t in takes
        ],
    }
    again, _ = messages.parse_animate(b64, expect_takes=2)
    np.testing.assert_array_equal(again[1].exp, takes[1].exp)
    assert messages.encode_take(takes[0])["n_frames"] == 10


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"fps": 30}, "30 fps"),
        ({"takes": []}, "no takes"),
        ({"n_frames": 11}, "frames"),
    ],
)
def test_bad_reply_fields(bad, words):
    with pytest.raises(messages.BadMessage, match=words):
        messages.parse_animate({**reply(), **bad})


@pytest.mark.parametrize(
    "override, words",
    [
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
        ({"score": "high"}, "score"),
        ({"exp": [[0.0] * 49] * 10}, r"shape \(10, 49\)"),
        ({"exp": [[math.nan] * 50] * 10}, "NaN"),
        ({"jaw": [[0.0] * 3] * 9}, "9 frames"),
        ({"exp_b64": "not base64!"}, "base64"),
    ],
)
def test_bad_takes(override, words):
    r = reply(**override)
    if "exp_b64" in override:
        for t in r["takes"]:
            del t["exp"]
    with pytest.raises(messages.BadMessage, match=words):
        messages.parse_animate(r)


def test_wrong_take_count_and_model_checks():
    with pytest.raises(messages.BadMessage, match="asked for 3"):
        messages.parse_animate(reply(), expect_takes=3)
    with pytest.raises(messages.BadMessage, match="head_id"):
        messages.check_model({"layout": {"n_exp": 50, "n_jaw": 3}, "head": {}})
    with pytest.raises(messages.BadMessage, match="layout"):
        messages.check_model({"layout": {"n_exp": 100, "n_jaw": 3}, "head": {"head_id": "x"}})


@pytest.mark.parametrize("fps, n_out", [(25, 51), (24, 49), (24 / 1.001, 48), (30, 61), (60, 121)])
def test_resample_frame_counts_and_ends(fps, n_out):
    x = np.linspace(0, 1, 51)[:, None]  # 2 s at 25 fps
    y = resample.resample(x, 25, fps)
    assert len(y) == n_out
    np.testing.assert_allclose(y[:, 0], np.arange(n_out) / fps / 2.0, atol=1e-12)
