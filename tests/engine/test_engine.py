"""Engine on a real tiny bundle: takes, seeds, guidance, progress, cancel, bad input."""

import threading

import numpy as np
import pytest
import soundfile as sf

from backend.engine import AnimateResult, Cancelled, Engine
from backend.samplers import SamplerError


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    return Engine(tiny_bundle, device="cpu")


@pytest.fixture(scope="module")
def speech():
    """The project's real speech sample, cut to 2.5 s (the length these tests were written for)."""
    from pathlib import Path

    audio, sr = sf.read(Path(__file__).resolve().parents[2] / "assets" / "speech" / "demo.wav", dtype="float32")
    assert sr == 16000
    return audio[: int(2.5 * sr)]


def test_animate_returns_takes_at_25_fps(engine, speech):
    res = engine.animate(speech, takes=3, seed=7)
    assert isinstance(res, AnimateResult) and res.fps == 25 and engine.device == "cpu"
    assert [t.seed for t in res.takes] == [7, 8, 9]
    n = len(speech) // 640
    for t in res.takes:
        assert t.exp.shape == (n, 50) and t.jaw.shape == (n, 3)
        assert t.exp.dtype == np.float32 and np.isfinite(t.exp).all() and np.isfinite(t.score)
    assert not np.allclose(res.takes[0].exp, res.takes[1].exp)  # seeds give different takes
    assert {"encode", "sample", "score"} <= set(res.timings)


def test_one_take_redrawn_alone_is_the_same(engine, speech):
    many = engine.animate(speech, takes=4, seed=3, guidance=1.5)
    one = engine.animate(speech, takes=1, seed=5, guidance=1.5)
    np.testing.assert_allclose(one.takes[0].exp, many.takes[2].exp, atol=1e-5)
    np.testing.assert_allclose(one.takes[0].jaw, many.takes[2].jaw, atol=1e-5)
    assert abs(one.takes[0].score - many.takes[2].score) < 1e-4


def test_samplers_presets_and_guidance(engine, speech):
    clip = speech[:16000]
    base = engine.animate(clip, takes=1, seed=1)
    guided = engine.animate(clip, takes=1, seed=1, guidance=3.0)
    assert not np.allclose(base.takes[0].exp, guided.takes[0].exp)
    for sampler in ("ddim", "dpmpp2m"):
        r = engine.animate(clip, takes=2, sampler=sampler, steps=3)
        assert len(r.takes) == 2
    assert set(engine.presets) >= {"draft", "default", "high"}
    assert engine.max_frames >= 250


def test_progress_and_cancel(engine, speech):
    seen = []
    engine.animate(speech[:8000], takes=1, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) > 3
    stop = threading.Event()

    def cancel_midway(f):
        if f > 0.3:
            stop.set()

    with pytest.raises(Cancelled):
        engine.animate(speech, takes=2, steps=8, progress=cancel_midway, cancel=stop)
    engine.animate(speech[:4000], takes=1)  # still usable afterwards


@pytest.mark.parametrize(
    "audio,kw",
    [
        (np.zeros(10, np.float32), {}),  # shorter than one frame
        (np.zeros((2, 16000), np.float32), {}),  # not mono
        (np.full(16000, np.nan, np.float32), {}),  # NaN
        (np.zeros(16000, np.float32), {"takes": 0}),
        (np.zeros(16000, np.float32), {"guidance": -1.0}),
        (np.zeros(16000, np.float32), {"seed": -3}),
    ],
)
def test_bad_input_raises_value_error(engine, audio, kw):
    with pytest.raises(ValueError):
        engine.animate(audio, **kw)


def test_bad_sampler_options_raise_sampler_error(engine):
    clip = np.zeros(16000, np.float32)
    for kw in ({"sampler": "euler"}, {"preset": "ultra"}, {"steps": 0}):
        with pytest.raises(SamplerError):
            engine.animate(clip, **kw)


def test_too_long_is_refused_with_the_limit(engine):
    with pytest.raises(ValueError, match="at most"):
        engine.animate(np.zeros((engine.max_frames + 1) * 640, np.float32))


def test_silence_and_one_frame_work(engine):
    for n in (640, 16000):
        r = engine.animate(np.zeros(n, np.float32), takes=2)
        assert r.takes[0].exp.shape == (n // 640, 50) and np.isfinite(r.takes[0].score)


def test_score_and_listen(engine, speech):
    res = engine.animate(speech, takes=2)
    t = res.takes[0]
    assert abs(engine.score(speech, t.exp, t.jaw) - t.score) < 1e-5
    wav = engine.listen(t.exp, t.jaw)
    assert wav.dtype == np.float32 and abs(len(wav) - len(t.exp) * 640) <= 640 and np.isfinite(wav).all()
