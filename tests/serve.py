"""`thunder serve` as the tests start it: a child process on a free loopback port, waited
for until /v1/health answers (the backend, Blender and shipped-bundle tests share it)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def thunder_serve(*args, env: dict, log: Path, cwd: Path | None = None, ready_s: float = 120.0):
    """`python -m backend.cli serve --port <free port> ARGS` with `env` (a whole environment),
    its output to the file `log`; yields its URL once /v1/health answers and stops it after
    (SIGTERM, then kill). A server that exits or does not answer in `ready_s` raises with the
    end of its log."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "serve", "--port", str(port), *map(str, args)],
            env=env,
            cwd=None if cwd is None else str(cwd),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + ready_s
            while True:
                try:
                    urllib.request.urlopen(f"{url}/v1/health", timeout=2).read()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"thunder serve did not start: {Path(log).read_text()[-2000:]}") from None
                    time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
