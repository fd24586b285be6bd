"""Fixtures: real uvicorn servers on free loopback ports, real audio files, a tiny bundle.

Servers run in a thread of the test process (uvicorn.Server with signal handlers
off) and are talked to over HTTP with httpx, exactly as the add-on does.
"""
from __future__ import annotations

import contextlib
import io
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
import uvicorn

from backend.service import Settings, create_app

TOKEN = "test-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(settings: Settings, token: str = TOKEN, engine=None):
    """Start create_app(settings) under uvicorn on 127.0.0.1:<free port>; yield (base_url, app)."""
    app = create_app(settings, token=token, engine=engine)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
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


def speechlike(seconds: float, rate: int = 16000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A voiced, syllable-modulated signal (harmonics under moving formant-like gains)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3.5 * t + rng.uniform(0, 6)), 0, None) ** 0.5
    x = 0.3 * voiced * envelope + 0.01 * rng.standard_normal(len(t))
    x = (x / max(1e-6, np.abs(x).max()) * 0.8).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


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
