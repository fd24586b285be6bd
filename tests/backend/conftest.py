"""Fixtures: real uvicorn servers on free loopback ports, real audio files, a tiny bundle.

Servers run in a thread of the test process (uvicorn.Server with signal handlers
off) and are talked to over HTTP with httpx, exactly as the add-on does.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.serve import free_port
from tests.signals import speechlike  # noqa: F401  (re-exported for the tests)
from backend import transport
from backend.service import Settings, create_app

TOKEN = "test-token-0123456789abcdef"
# One pooled client for all tests: a fresh httpx client costs ~0.1 s (TLS context) per request.
HTTP = httpx.Client(timeout=120)


@contextlib.contextmanager
def running_server(settings: Settings, token: str = TOKEN, engine=None):
    """Start create_app(settings) under uvicorn (as `thunder serve` does: backend.transport) on
    127.0.0.1:<free port>; yield (base_url, app)."""
    app = create_app(settings, token=token, engine=engine)
    port = free_port()
    server = transport.server(app, settings, "127.0.0.1", port, "warning", graceful_s=1)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(10)


def auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def animate(url, data: bytes, timeout=120, **fields) -> httpx.Response:
    """POST /v1/animate with the test token: `data` as the audio file, `fields` as the form."""
    return HTTP.post(
        url + "/v1/animate",
        headers=auth(),
        files={"audio": ("clip", data)},
        data={k: str(v) for k, v in fields.items()},
        timeout=timeout,
    )


def encode(x: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.fixture(scope="session")
def no_model_server():
    """A server whose bundle is missing: everything but the model must work."""
    with running_server(Settings(bundle="/nonexistent/bundle", max_upload_mb=2, max_seconds=30)) as (url, _):
        yield url


@pytest.fixture(scope="session")
def speech_wav() -> bytes:
    return encode(speechlike(3.0), 16000)


@pytest.fixture(scope="session")
def engine(tiny_bundle):
    from backend.engine import Engine

    return Engine(tiny_bundle, device="cpu")


@pytest.fixture(scope="session")
def model_server(engine):
    """The tiny bundle behind a real server (its own worker, default limits but small; no work
    budget: tests use long ddpm jobs to see cancellation, test_admission tests the budget)."""
    with running_server(Settings(max_seconds=120, max_queue=8, timeout_s=120, max_cost=0), engine=engine) as (url, app):
        yield url
