"""Admission control that matches the one worker: a gone client frees its queue place at once,
a request over the work budget is refused before any work, freed memory goes back to the
system, and a cancelled job is not logged as an error."""

from __future__ import annotations

import gc
import logging
import threading
import time

import httpx
import numpy as np
import pytest

from backend import jobs, memory, windows
from backend.service import Settings
from tests.backend.conftest import HTTP, animate, encode, running_server, speechlike


def held(app) -> int:
    return app.state.worker.held


def wait_for(condition, limit: float, what: str) -> float:
    t0 = time.monotonic()
    while not condition():
        assert time.monotonic() - t0 < limit, what
        time.sleep(0.02)
    return time.monotonic() - t0


def test_a_client_that_leaves_the_queue_frees_its_place_at_once(engine):
    clip = encode(speechlike(10.0), 16000)
    with running_server(Settings(max_queue=2, max_cost=0), engine=engine) as (url, app):
        running = threading.Thread(target=lambda: animate(url, clip, takes=8, sampler="ddpm", timeout=60))
        running.start()
        wait_for(lambda: held(app) == 1, 10, "first job never started")
        with pytest.raises(httpx.ReadTimeout):  # queued behind it, then gone
            animate(url, clip, takes=1, timeout=0.5)
        wait_for(lambda: held(app) == 1, 1.0, "the gone client kept its queue place")
        third = []
        t = threading.Thread(target=lambda: third.append(animate(url, encode(speechlike(0.5), 16000), takes=1)))
        t.start()
        wait_for(lambda: held(app) == 2 or third, 2.0, "a new client was not queued")
        assert not third, f"refused: {third[0].json()}"  # before: 503 busy until the ddpm job ended
        app.state.worker.close()  # end the ddpm job: nothing more to see here
        running.join(30)
        t.join(30)


def test_cost_counts_frames_takes_steps_and_guidance(engine):
    opts = jobs.AnimateOptions(takes=4, steps=10)
    walked = jobs.walked_steps(engine, "dpmpp2m", 10)
    lips = jobs.mean_lips_rows(engine, opts)  # the preset's guided mean lips: rows of their own
    assert (lips > 0) == (engine.presets["default"].get("lips") == "mean")
    assert jobs.cost(engine, 250, opts) == 250 * (4 * walked + lips)
    assert jobs.cost(engine, 250, jobs.AnimateOptions(takes=4, steps=10, guidance=2.0)) == 2 * 250 * 4 * walked
    ddpm = jobs.AnimateOptions(takes=1, sampler="ddpm", steps=5)  # ddpm walks the whole schedule
    assert jobs.cost(engine, 100, ddpm) == 100 * engine.schedule.steps
    long = 40 * engine.max_frames  # windows overlap: their frames count
    frames = sum(e - s for s, e in windows.animate_spans(long, engine.max_frames))
    one = jobs.AnimateOptions(takes=1, steps=1)
    assert frames > long and jobs.cost(engine, long, one) == frames * (1 + jobs.mean_lips_rows(engine, one))


def test_cost_counts_the_mean_lips_draws_once_per_request(tiny_bundle):
    """`lip_draws` K: K rows (2 K guided) on the first step, whatever the number of takes."""
    from backend.engine import Engine

    engine = Engine(tiny_bundle, device="cpu")
    base = {"sampler": "dpmpp2m", "steps": 4, "lips": "mean"}
    engine.presets = {"g": {**base, "lip_guidance": 1.4, "lip_draws": 4}, "u": {**base, "lip_draws": 4}}
    walked = jobs.walked_steps(engine, "dpmpp2m", 4)
    for takes in (1, 8):
        assert jobs.cost(engine, 100, jobs.AnimateOptions(takes=takes, preset="g")) == 100 * (takes * walked + 8)
        assert jobs.cost(engine, 100, jobs.AnimateOptions(takes=takes, preset="u")) == 100 * (takes * walked + 4)


def test_a_request_over_the_budget_is_refused_before_work(engine):
    clip = encode(speechlike(4.0), 16000)  # 100 frames
    opts = jobs.AnimateOptions(takes=2, sampler="ddpm")
    budget = jobs.cost(engine, 100, opts) - 1
    with running_server(Settings(max_cost=budget), engine=engine) as (url, app):
        t0 = time.monotonic()
        r = animate(url, clip, takes=2, sampler="ddpm")
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_costly"
        assert "ddpm walks all" in r.json()["error"]["message"] and f"{budget:,}" in r.json()["error"]["message"]
        assert time.monotonic() - t0 < 2 and held(app) == 0
        r = animate(url, clip, takes=2, stream="true", sampler="ddpm")  # refused before the stream begins
        assert r.status_code == 413 and r.headers["content-type"] == "application/json"
        assert animate(url, clip, takes=1, steps=2).status_code == 200


def test_freed_heap_goes_back_to_the_system():
    if memory.heap_free_bytes() is None:
        pytest.skip("glibc's mallinfo2 is not available here")
    before = memory.rss_bytes()
    blocks = [np.ones(10_000) for _ in range(20_000)]  # 1.6 GB in 80 kB blocks: the heap, not mmap
    survivors = blocks[::2]  # what a job's results leave between the holes
    del blocks
    held_free = memory.rss_bytes() - before
    assert memory.heap_free_bytes() > 600 << 20  # glibc keeps the holes for itself...
    assert memory.give_back(64 << 20)
    after = memory.rss_bytes() - before
    assert held_free > 1400 << 20 and held_free - after > 600 << 20, (held_free, after)  # ...until trimmed
    assert not memory.give_back(64 << 20)  # nothing left to give: no trim
    del survivors


def test_a_cancelled_job_logs_no_error(model_server, caplog):
    clip = encode(speechlike(10.0), 16000)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            with pytest.raises(httpx.ReadTimeout):
                animate(model_server, clip, timeout=0.8, takes=8, sampler="ddpm")
        t0 = time.monotonic()
        while HTTP.get(model_server + "/v1/health").json()["queue"]:
            assert time.monotonic() - t0 < 10
            time.sleep(0.05)
        gc.collect()
        time.sleep(0.2)
        gc.collect()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def test_takes_are_scored_in_batches(engine):
    """M2S attends over a whole window: 32 takes scored at once peaked at 970 MB on the shipped
    bundle (620 MB in batches of 8). Batching changes no score."""
    from backend.engine import SCORE_BATCH

    sizes = []
    real = engine._m2s_mel

    def spy(exp, jaw, spk):
        sizes.append(len(exp))
        return real(exp, jaw, spk)

    engine._m2s_mel = spy
    try:
        audio = speechlike(2.0)
        result = engine.animate(audio, takes=SCORE_BATCH + 3, steps=1)
    finally:
        del engine._m2s_mel
    assert sizes == [SCORE_BATCH, 3]
    for take in result.takes[::5]:
        assert take.score == pytest.approx(engine.score(audio, take.exp, take.jaw), abs=1e-6)
