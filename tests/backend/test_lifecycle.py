"""The server's life and its edges: readiness, fail-fast start, shutdown that answers everyone
in JSON, header and body timeouts, idle connections, uvicorn's own errors, and browsers."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time

import pytest

from backend.service import Settings
from tests.backend.conftest import HTTP, animate, auth, encode, running_server, speechlike


def raw(port: int, data: bytes, wait: float = 5.0) -> bytes:
    """Send bytes on a fresh connection; everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except socket.timeout:
            pass
    return b"".join(chunks)


def json_error(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert "content-type: application/json" in head.decode("latin-1").lower(), response[:300]
    return int(lines[0].split()[1]), json.loads(body)["error"]


# ---- readiness and fail-fast ----


def test_ready_fails_without_a_model(no_model_server, model_server):
    r = HTTP.get(no_model_server + "/v1/ready")
    assert r.status_code == 503 and r.json()["error"]["code"] == "no_model"
    assert "no model bundle" in r.json()["error"]["message"]
    assert HTTP.get(no_model_server + "/v1/health").status_code == 200  # alive, not ready
    r = HTTP.get(model_server + "/v1/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_require_model_exits_nonzero_on_a_bad_bundle(tiny_bundle, tmp_path, monkeypatch, capsys):
    from backend.cli import main

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_bundle, corrupt)
    graph = corrupt / "denoiser.onnx"
    graph.write_bytes(graph.read_bytes()[:-10] + b"0123456789")
    for bundle, fragment in ((tmp_path / "missing", "manifest.json missing"), (corrupt, "corrupt or was changed")):
        with pytest.raises(SystemExit) as stop:
            main(["serve", "--bundle", str(bundle), "--require-model", "--port", "1"])
        message = str(stop.value.code)
        assert message.startswith("thunder serve: --require-model:") and fragment in message
        assert "\n" not in message


# ---- shutdown ----


def test_shutdown_answers_running_and_queued_requests_in_json(engine):
    clip = encode(speechlike(10.0), 16000)
    out = {}

    def go(name, **fields):
        out[name] = animate(url, clip, **fields)

    with running_server(Settings(max_cost=0), engine=engine) as (url, app):
        running = threading.Thread(target=go, args=("running",), kwargs={"takes": 8, "sampler": "ddpm"})
        queued = threading.Thread(target=go, args=("queued",), kwargs={"takes": 1, "stream": "true"})
        running.start()
        t0 = time.monotonic()
        while app.state.worker.held < 1:
            assert time.monotonic() - t0 < 10
            time.sleep(0.02)
        queued.start()
        while app.state.worker.held < 2:
            assert time.monotonic() - t0 < 10
            time.sleep(0.02)
        stopping = time.monotonic()
    running.join(10)
    queued.join(10)
    # answered as soon as the server began to stop, well inside uvicorn's 1 s grace period
    assert time.monotonic() - stopping < 1.0
    r = out["running"]
    assert r.status_code == 503 and r.json()["error"]["code"] == "shutting_down" and r.headers["retry-after"]
    lines = [json.loads(line) for line in out["queued"].text.splitlines()]  # the stream had begun
    assert lines[-1]["event"] == "error" and lines[-1]["code"] == "shutting_down" and lines[-1]["status"] == 503


# ---- the transport: timeouts, connection cap, uvicorn's own errors ----


@pytest.fixture(scope="module")
def edgy_server(engine):
    settings = Settings(
        header_timeout_s=0.5,
        idle_timeout_s=0.5,
        keep_alive_s=1,
        max_connections=80,
        allowed_origins=("http://localhost:3000",),
    )
    with running_server(settings, engine=engine) as (url, _):
        yield url, int(url.rsplit(":", 1)[1])


def test_unfinished_headers_time_out_with_json(edgy_server):
    _, port = edgy_server
    t0 = time.monotonic()
    status, error = json_error(raw(port, b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"))
    assert status == 408 and error["code"] == "timeout" and "headers" in error["message"]
    assert 0.4 < time.monotonic() - t0 < 3


def test_a_trickling_client_cannot_extend_the_header_deadline(edgy_server):
    _, port = edgy_server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        t0 = time.monotonic()
        try:
            for ch in b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n":
                s.sendall(bytes([ch]))
                time.sleep(0.05)
        except OSError:  # closed under us: the deadline passed
            pass
        reply = s.recv(65536)
    assert b" 408 " in reply.split(b"\r\n", 1)[0] and time.monotonic() - t0 < 2.5


def test_a_silent_body_times_out_with_json(edgy_server):
    _, port = edgy_server
    head = (
        b"POST /v1/listen HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer test-token-0123456789abcdef\r\n"
        b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"exp": ['
    )
    status, error = json_error(raw(port, head))
    assert status == 408 and error["code"] == "timeout" and "body" in error["message"]


def test_idle_connections_do_not_lock_others_out(engine, speech_wav):
    """70 connections that never finish their headers (stock uvicorn under `thunder serve` answered
    everyone a plain-text 503 while they were held); past the connection cap, JSON 503."""
    with running_server(Settings(header_timeout_s=30, max_connections=80), engine=engine) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(70)]
        try:
            for s in socks:
                s.sendall(b"GET /v1/health HTTP/1.1\r\n")
            assert animate(url, speech_wav, takes=1, steps=1).status_code == 200
            extra = [socket.create_connection(("127.0.0.1", port)) for _ in range(12)]
            try:
                refused = [json_error(s.recv(65536)) for s in extra if _readable(s)]
                assert refused and all(status == 503 and e["code"] == "busy" for status, e in refused), refused
            finally:
                for s in extra:
                    s.close()
        finally:
            for s in socks:
                s.close()
        assert HTTP.get(url + "/v1/health").status_code == 200


def _readable(s: socket.socket) -> bool:
    s.settimeout(0.3)
    try:
        return bool(s.recv(1, socket.MSG_PEEK))
    except socket.timeout:
        return False


def test_malformed_requests_get_json(edgy_server):
    _, port = edgy_server
    for junk in (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40 + b"\r\n\r\n",  # TLS hello
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n",
        b"POST /v1/listen HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: nope\r\n\r\n",
    ):
        status, error = json_error(raw(port, junk))
        assert status == 400 and error["code"] == "bad_request"


def test_browsers_on_other_origins_are_refused_even_with_the_token(edgy_server, speech_wav):
    url, _ = edgy_server
    for origin in ("http://evil.example", "null", "http://localhost:3001"):
        r = HTTP.post(
            url + "/v1/animate",
            headers={**auth(), "Origin": origin},
            files={"audio": ("a.wav", speech_wav)},
            data={"takes": "1", "steps": "1"},
        )
        assert r.status_code == 403 and r.json()["error"]["code"] == "bad_origin", origin
        assert HTTP.get(url + "/v1/health", headers={"Origin": origin}).status_code == 403
    r = HTTP.post(
        url + "/v1/animate",
        headers={**auth(), "Origin": "http://LOCALHOST:3000/"},
        files={"audio": ("a.wav", speech_wav)},
        data={"takes": "1", "steps": "1"},
    )
    assert r.status_code == 200  # listed with --allowed-origin
    assert "access-control-allow-origin" not in r.headers  # still no CORS: the page cannot read it


def test_numbers_must_be_finite(model_server, speech_wav):
    r = animate(model_server, speech_wav, guidance="nan")
    assert r.status_code == 422 and r.json()["error"]["message"] == "guidance: Input should be a finite number"
