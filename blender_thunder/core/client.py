"""HTTP client of the THUNDER backend (docs/protocol.md), stdlib only.

No bpy: it runs on worker threads. A request can be cancelled from another
thread: `Cancel.cancel()` shuts the socket down, the blocked read raises, and
the backend sees the client go away.

`animate(..., progress=fn)` asks for the streaming answer (NDJSON progress lines,
then the result) and calls `fn(event)` per progress line; a backend that does not
stream answers plain JSON, which is read as before.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_URL = "http://127.0.0.1:8765"
NDJSON = "application/x-ndjson"
STAGE_TEXT = {
    "queued": "queued",
    "encoding": "encoding audio",
    "sampling": "sampling",
    "scoring": "scoring takes",
    "done": "finishing",
}


class BackendError(RuntimeError):
    """The backend answered with an error, or could not be reached."""

    def __init__(self, code: str, message: str, status: int = 0):
        super().__init__(f"{message} [{code}]")
        self.code, self.message, self.status = code, message, status


class Cancelled(RuntimeError):
    pass


class Cancel:
    """Cancellation token shared by the worker thread and the UI."""

    def __init__(self):
        self._event = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()
        with self._lock:
            sock = self._conn.sock if self._conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _attach(self, conn) -> None:
        with self._lock:
            self._conn = conn
        if self.is_set:
            raise Cancelled("cancelled")

    def _detach(self) -> None:
        with self._lock:
            self._conn = None


def token_path() -> Path:
    """Where the backend stores its token: $XDG_CONFIG_HOME/thunder/token."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "thunder" / "token"


def read_token(path: str | os.PathLike | None = None) -> str:
    p = Path(path) if path else token_path()
    try:
        return p.read_text().strip()
    except OSError:
        return ""


def encode_multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    """multipart/form-data body; `files`: name -> (filename, bytes)."""
    boundary = f"thunder-{uuid.uuid4().hex}"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        safe = os.path.basename(filename).replace('"', "_")
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{safe}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Client:
    def __init__(
        self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 600.0, token_file: str | None = None
    ):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"backend URL must look like http://127.0.0.1:8765, not {url!r}")
        self.url = url
        self.host, self.port = parts.hostname, parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self._token, self.token_file = token, token_file
        self.timeout = timeout

    @property
    def token(self) -> str:
        """The given token, else the token file read now: a backend started after
        this client was made writes it on first start."""
        return self._token if self._token else read_token(self.token_file)

    @contextlib.contextmanager
    def _exchange(
        self,
        method: str,
        path: str,
        body: bytes | None,
        content_type: str | None,
        cancel: Cancel | None,
        timeout: float | None,
        accept: str = "application/json",
    ):
        """Send a request and yield its response for reading; a network failure, while
        sending or while the caller reads, becomes BackendError (Cancelled once cancelled)."""
        headers = {"Accept": accept}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
        try:
            if cancel is not None:
                cancel._attach(conn)
            conn.request(method, self.prefix + path, body=body, headers=headers)
            yield conn.getresponse()
        except (OSError, http.client.HTTPException, BackendError) as exc:
            # A cancelled read may end in an error or in a cut-short stream: either way, cancelled.
            if cancel is not None and cancel.is_set:
                raise Cancelled("cancelled") from None
            if isinstance(exc, BackendError):
                raise
            raise BackendError("unreachable", f"cannot reach the THUNDER backend at {self.url}: {exc}") from None
        finally:
            if cancel is not None:
                cancel._detach()
            conn.close()
        if cancel is not None and cancel.is_set:
            raise Cancelled("cancelled")

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        cancel: Cancel | None = None,
        timeout: float | None = None,
    ) -> tuple[bytes, str]:
        with self._exchange(method, path, body, content_type, cancel, timeout) as resp:
            data = resp.read()
        _raise_for_status(resp.status, data)
        return data, resp.getheader("Content-Type", "")

    def _json(self, *args, **kwargs) -> dict:
        data, _ = self._request(*args, **kwargs)
        return _json_object(data)

    def health(self, timeout: float = 2.0) -> dict:
        return self._json("GET", "/v1/health", timeout=timeout)

    def model(self) -> dict:
        return self._json("GET", "/v1/model")

    def head(self) -> bytes:
        return self._request("GET", "/v1/model/head")[0]

    def animate(self, audio: bytes, filename: str, options: dict, cancel: Cancel | None = None, progress=None) -> dict:
        """The /v1/animate payload. With `progress`, the answer is streamed and
        `progress(event)` is called on this thread for each progress event (a dict:
        fraction, stage, window, windows, step, steps, elapsed_s, eta_s)."""
        fields = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in options.items() if v is not None}
        body, ctype = encode_multipart(fields, {"audio": (filename, audio)})
        if progress is None:
            return self._json("POST", "/v1/animate", body, ctype, cancel=cancel)
        # An older backend ignores the Accept header and answers plain JSON: read that as before.
        with self._exchange(
            "POST", "/v1/animate", body, ctype, cancel, None, accept=f"{NDJSON}, application/json;q=0.5"
        ) as resp:
            if resp.status < 400 and resp.getheader("Content-Type", "").startswith(NDJSON):
                return _read_events(resp, progress)
            data = resp.read()
        _raise_for_status(resp.status, data)
        return _json_object(data)

    def listen(self, payload: dict, cancel: Cancel | None = None) -> bytes:
        body = json.dumps(payload).encode()
        return self._request("POST", "/v1/listen", body, "application/json", cancel=cancel)[0]


def _raise_for_status(status: int, data: bytes) -> None:
    if status < 400:
        return
    try:
        err = json.loads(data)["error"]
        raise BackendError(str(err.get("code", "error")), str(err.get("message", "")), status)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BackendError("http", f"HTTP {status}: {data[:200]!r}", status) from None


def _json_object(data: bytes) -> dict:
    try:
        out = json.loads(data)
    except ValueError:
        raise BackendError("bad_reply", "the backend sent something that is not JSON") from None
    if not isinstance(out, dict):
        raise BackendError("bad_reply", "the backend sent JSON that is not an object")
    return out


def _read_events(resp, progress) -> dict:
    """A streamed /v1/animate answer: progress lines to `progress`, then the result or the error."""
    for line in resp:  # http.client undoes the chunked encoding line by line
        if not line.strip():
            continue
        event = _json_object(line)
        kind = event.pop("event", None)
        if kind == "progress":
            progress(event)
        elif kind == "result":
            return event
        elif kind == "error":
            raise BackendError(
                str(event.get("code", "error")), str(event.get("message", "")), int(event.get("status") or 0)
            )
    raise BackendError("bad_reply", "the backend's stream ended without a result")


def progress_text(event: dict) -> str:
    """One progress event as the panel shows it: `sampling · window 2/3 · step 9/25 · 14 s left`."""
    stage = str(event.get("stage", ""))
    parts = [STAGE_TEXT.get(stage, stage)]
    working = stage in ("encoding", "sampling", "scoring")
    if working and int(event.get("windows") or 0) > 1:
        parts.append(f"window {event['window']}/{event['windows']}")
    if stage == "sampling" and event.get("steps"):
        parts.append(f"step {event.get('step', 0)}/{event['steps']}")
    if working and event.get("eta_s") is not None:
        parts.append(f"{_duration(float(event['eta_s']))} left")
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 1:
        return "< 1 s"
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"
