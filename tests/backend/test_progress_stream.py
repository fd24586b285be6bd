"""The streaming /v1/animate (NDJSON progress, then the result) against a real server and the tiny
bundle: per-window and per-step progress, the same result as the plain answer, errors before and
after the stream starts, cancellation when the client goes away, and the add-on's client reading it."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import re
import threading
import time

import httpx
import pytest

from backend.service import Settings
from blender_thunder.core import client as addon
from tests.backend.conftest import HTTP, TOKEN, auth, encode, running_server, speechlike

WINDOW = 100  # frames per pass: a 9 s clip (225 frames) then needs 3 windows
LONG = {"sampler": "ddpm"}  # 1000 steps per window: seconds of work on the tiny bundle
NDJSON = {**auth(), "Accept": "application/x-ndjson"}


@pytest.fixture(scope="module")
def windowed_engine(tiny_bundle):
    """Its own engine, so shrinking the pass length leaves the session's engine alone."""
    from backend.engine import Engine

    engine = Engine(tiny_bundle, device="cpu")
    engine.max_frames = WINDOW
    return engine


@pytest.fixture(scope="module")
def server(windowed_engine):
    # A long job on purpose (to watch it and cancel it): above the default cost budget.
    with running_server(Settings(timeout_s=120, max_cost=1e8), engine=windowed_engine) as (url, app):
        yield url, app


@pytest.fixture(scope="module")
def clip() -> bytes:
    return encode(speechlike(9.0, seed=4), 16000)


def form(**fields) -> dict:
    return {k: str(v) for k, v in fields.items()}


def stream(url: str, data: bytes, headers=NDJSON, timeout=120, **fields) -> tuple[httpx.Response, list[dict]]:
    r = HTTP.post(
        url + "/v1/animate", headers=headers, files={"audio": ("clip.wav", data)}, data=form(**fields), timeout=timeout
    )
    lines = [json.loads(line) for line in r.text.splitlines()] if r.status_code == 200 else []
    return r, lines


def wait_idle(app, limit: float) -> float:
    t0 = time.monotonic()
    while app.state.worker.held:
        assert time.monotonic() - t0 < limit, "the job kept running"
        time.sleep(0.02)
    return time.monotonic() - t0


def without_timings(payload: dict) -> dict:
    return {k: v for k, v in payload.items() if k != "timings"}


def check_progress(events: list[dict], windows: int, steps: int) -> None:
    """Fractions never fall and end at 1.0; windows and steps are counted as the engine walks them."""
    fractions = [e["fraction"] for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and events[-1]["stage"] == "done"
    running = [e for e in events if e["stage"] != "queued"]
    assert {e["windows"] for e in running} == {windows} and {e["steps"] for e in running} == {steps}
    assert all(0 <= e["step"] <= steps and 1 <= e["window"] <= windows for e in running)
    keys = [(e["window"], e["step"]) for e in running]
    assert keys == sorted(keys), "window, then step within it, only move forward"
    assert all(e["elapsed_s"] >= 0 and (e["eta_s"] is None or e["eta_s"] >= 0) for e in events)


def test_stream_reports_windows_and_steps_and_ends_with_the_plain_result(server, clip):
    url, _ = server
    t0 = time.monotonic()
    r, lines = stream(url, clip, takes=2, seed=11, encoding="b64", **LONG)
    wall = time.monotonic() - t0
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    *events, last = lines
    assert {e["event"] for e in events} == {"progress"} and last["event"] == "result"
    check_progress(events, windows=3, steps=1000)
    sampling = [e for e in events if e["stage"] == "sampling"]
    assert {e["window"] for e in sampling} == {1, 2, 3}, "every window reports its steps"
    assert len({e["step"] for e in sampling}) >= 6
    assert any(e["eta_s"] is not None for e in sampling)
    assert len(events) <= 10 * wall + 2, f"{len(events)} events in {wall:.1f} s: more than 10 a second"

    plain = HTTP.post(
        url + "/v1/animate",
        headers=auth(),
        files={"audio": ("clip.wav", clip)},
        data=form(takes=2, seed=11, encoding="b64", **LONG),
        timeout=120,
    )
    assert plain.status_code == 200 and plain.headers["content-type"] == "application/json"
    result = {k: v for k, v in last.items() if k != "event"}
    assert without_timings(result) == without_timings(plain.json())
    assert result["timings"]["windows"] == 3


def test_stream_field_single_pass(server):
    """`stream=true` works without the Accept header; a clip that fits one pass is window 1 of 1."""
    url, _ = server
    r, lines = stream(url, encode(speechlike(2.0), 16000), headers=auth(), stream="true", takes=1, steps=4)
    assert r.headers["content-type"].startswith("application/x-ndjson")
    *events, last = lines
    assert last["event"] == "result" and last["n_frames"] == 50 and len(last["takes"]) == 1
    check_progress(events, windows=1, steps=4)


@pytest.mark.parametrize(
    "data,fields,status,code",
    [
        (b"not audio at all", {}, 415, "bad_audio"),
        (None, {"takes": 0}, 422, "bad_option"),
        (None, {"preset": "nope"}, 422, "bad_option"),
    ],
)
def test_errors_before_work_keep_their_http_status(server, data, fields, status, code):
    url, _ = server
    r, _ = stream(url, data or encode(speechlike(0.5), 16000), **fields)
    assert r.status_code == status and r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == code


def test_no_model_keeps_its_http_status(no_model_server):
    r, _ = stream(no_model_server, encode(speechlike(0.5), 16000))
    assert r.status_code == 503 and r.json()["error"]["code"] == "no_model"


def test_timeout_after_the_stream_started_is_an_error_event(windowed_engine, clip):
    with running_server(Settings(timeout_s=1.0), engine=windowed_engine) as (url, app):
        r, lines = stream(url, clip, takes=2, **LONG)
        assert r.status_code == 200 and lines[0]["event"] == "progress"
        assert lines[-1] == {
            "event": "error",
            "code": "timeout",
            "status": 503,
            "message": "request took longer than 1 s",
        }
        wait_idle(app, limit=5.0)


def test_disconnect_mid_stream_cancels_the_job(server, clip):
    url, app = server
    seen = []
    with httpx.Client(timeout=60) as fresh:
        with fresh.stream(
            "POST", url + "/v1/animate", headers=NDJSON, files={"audio": ("clip.wav", clip)}, data=form(takes=8, **LONG)
        ) as r:
            for line in r.iter_lines():
                seen.append(json.loads(line))
                if seen[-1].get("stage") == "sampling":
                    break  # leaving both blocks closes the connection mid-stream
    assert seen[-1]["fraction"] < 0.3, "the job must still have had most of its work ahead"
    # the whole job takes well over 10 s here; the engine stops at its next step instead
    assert wait_idle(app, limit=3.0) < 3.0
    r, lines = stream(url, encode(speechlike(0.5), 16000), takes=1, steps=2)
    assert lines[-1]["event"] == "result"


def test_addon_client_reports_progress_and_reads_the_result(server, clip):
    url, _ = server
    client = addon.Client(url, token=TOKEN)
    options = {"takes": 1, "seed": 3, "encoding": "b64", "rank": True, **LONG}
    events = []
    streamed = client.animate(clip, "clip.wav", options, progress=events.append)
    check_progress(events, windows=3, steps=1000)
    plain = client.animate(clip, "clip.wav", options)
    assert without_timings(streamed) == without_timings(plain)
    texts = [addon.progress_text(e) for e in events if e["stage"] == "sampling"]
    assert texts and all(re.fullmatch(r"sampling · window [123]/3 · step \d+/1000( · .+ left)?", t) for t in texts)


def test_addon_client_cancel_mid_stream_stops_the_job(server, clip):
    url, app = server
    cancel = addon.Cancel()

    def progress(event):
        if event["stage"] == "sampling":
            cancel.cancel()  # what the panel's cancel button calls (there from the UI thread)

    with pytest.raises(addon.Cancelled):
        addon.Client(url, token=TOKEN).animate(clip, "clip.wav", {"takes": 8, **LONG}, cancel=cancel, progress=progress)
    assert wait_idle(app, limit=3.0) < 3.0


def test_addon_client_errors_in_and_before_the_stream(server, windowed_engine, clip):
    url, _ = server
    with pytest.raises(addon.BackendError) as err:
        addon.Client(url, token=TOKEN).animate(b"RIFF junk", "x.wav", {}, progress=lambda e: None)
    assert err.value.code == "bad_audio" and err.value.status == 415
    with running_server(Settings(timeout_s=1.0), engine=windowed_engine) as (slow, app):
        with pytest.raises(addon.BackendError) as err:
            addon.Client(slow, token=TOKEN).animate(clip, "clip.wav", {"takes": 2, **LONG}, progress=lambda e: None)
        assert err.value.code == "timeout" and err.value.status == 503
        wait_idle(app, limit=5.0)


@contextlib.contextmanager
def non_streaming_backend(upstream: str):
    """A backend that predates streaming: the real server behind a loopback relay that drops the
    client's Accept header, as an older backend ignores it."""
    target = httpx.URL(upstream)

    class Relay(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            conn = http.client.HTTPConnection(target.host, target.port, timeout=120)
            conn.request("POST", self.path, body, {k: v for k, v in self.headers.items() if k.lower() != "accept"})
            reply = conn.getresponse()
            data = reply.read()
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.getheader("Content-Type"))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()

        def log_message(self, *args):
            pass

    relay = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    thread = threading.Thread(target=relay.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{relay.server_address[1]}"
    finally:
        relay.shutdown()
        relay.server_close()


def test_addon_client_falls_back_to_a_backend_that_does_not_stream(server):
    url, _ = server
    with non_streaming_backend(url) as old:
        events = []
        reply = addon.Client(old, token=TOKEN).animate(
            encode(speechlike(1.0), 16000), "clip.wav", {"takes": 2, "seed": 5, "steps": 3}, progress=events.append
        )
    assert events == [] and reply["n_frames"] == 25 and [t["seed"] for t in reply["takes"]] == [5, 6]
