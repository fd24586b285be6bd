"""Lanes (backend/lanes.py): a sampler step's rows split across single-thread sessions give the
same takes as one session, on the tiny bundle and on the shipped one."""

from __future__ import annotations

import numpy as np
import pytest

from backend.bundle import lane_count, load_bundle
from backend.engine import Engine
from backend.lanes import Lanes, batch_axes
from tests.backend.conftest import speechlike

SHIPPED = "backend/models/thunder-base"


def step_feeds(bundle, rows: int, frames: int = 40) -> dict:
    rng = np.random.default_rng(rows)
    ctx_shape = [
        d if isinstance(d, int) else {"batch": rows, "time": frames}[d]
        for d in bundle.manifest["graphs"]["denoiser"]["inputs"]["ctx"]
    ]
    return {
        "x": rng.standard_normal((rows, frames, 53), dtype=np.float32),
        "t": rng.integers(0, 1000, rows).astype(np.int64),
        "ctx": rng.standard_normal(ctx_shape, dtype=np.float32),
    }


def test_rows_axes_come_from_the_manifest():
    assert batch_axes({"x": ["batch", "time", 53], "t": ["batch"], "ctx": [8, 2, "batch", "time", 128]}) == {
        "x": 0,
        "t": 0,
        "ctx": 2,
    }
    assert batch_axes({"features": [1, "time", 384]}) == {}


def test_lane_count_defaults_to_two_on_a_multicore_cpu_only():
    assert lane_count("cpu", 2, None) == 2
    assert lane_count("cpu", 1, None) == 0  # one thread: nothing to share
    assert lane_count("cuda", 16, None) == 0 and lane_count("cuda", 16, 2) == 0  # a GPU: one launch a pass
    assert lane_count("cpu", 2, 0) == 0 and lane_count("cpu", 1, 3) == 3


def test_split_rows_match_one_session(tiny_bundle):
    one = load_bundle(tiny_bundle, "cpu", threads=2, lanes=0)
    two = load_bundle(tiny_bundle, "cpu", threads=2, lanes=2)
    assert not one.lanes and two.lanes["denoiser"].n == 2
    for rows in (2, 5, 16):  # even, odd (3 + 2), the first step of 8 takes with lip draws
        feeds = step_feeds(one, rows)
        np.testing.assert_allclose(two.run("denoiser", feeds)[0], one.run("denoiser", feeds)[0], atol=1e-5)
    assert two.lanes["denoiser"].run(step_feeds(one, 1)) is None  # one row: the bundle's own session runs it
    np.testing.assert_allclose(
        two.run("denoiser", step_feeds(one, 1))[0], one.run("denoiser", step_feeds(one, 1))[0], atol=1e-6
    )


def test_inputs_that_disagree_on_rows_are_refused(tiny_bundle):
    two = load_bundle(tiny_bundle, "cpu", threads=2, lanes=2)
    feeds = step_feeds(two, 4)
    feeds["t"] = feeds["t"][:3]
    with pytest.raises(ValueError, match="disagree on the number of rows"):
        two.lanes["denoiser"].run(feeds)


def test_lanes_need_the_outputs_rows_axis(tiny_bundle):
    bundle = load_bundle(tiny_bundle, "cpu", threads=2, lanes=0)
    session = bundle.sessions["denoiser"]
    with pytest.raises(ValueError, match="no rows axis known for output"):
        Lanes(lambda: session, 2, {"x": 0}, {})
    with pytest.raises(ValueError, match="n >= 2"):
        Lanes(lambda: session, 1, {"x": 0}, {"x0": 0})


@pytest.mark.parametrize("bundle", ["tiny", "shipped"])
def test_takes_do_not_depend_on_the_lanes(bundle, tiny_bundle):
    path = tiny_bundle if bundle == "tiny" else SHIPPED
    audio = speechlike(2.0)
    ref = Engine(path, device="cpu", threads=2, lanes=0).animate(audio, takes=3, seed=4)
    got = Engine(path, device="cpu", threads=2, lanes=2).animate(audio, takes=3, seed=4)
    for a, b in zip(ref.takes, got.takes):
        np.testing.assert_allclose(b.exp, a.exp, atol=1e-4)
        np.testing.assert_allclose(b.jaw, a.jaw, atol=1e-5)
        assert b.score == pytest.approx(a.score, abs=1e-4)
