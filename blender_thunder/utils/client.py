"""HTTP client of the THUNDER backend (docs/protocol.md), stdlib only.

No bpy: it runs on worker threads. A request can be cancelled from another
thread: `Cancel.cancel()` shuts the socket down, the blocked read raises, and
the backend sees the client go away.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_URL = "http://127.0.0.1:8765"


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
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{safe}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Client:
    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 600.0,
                 token_file: str | None = None):
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

    def _request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
                 cancel: Cancel | None = None, timeout: float | None = None) -> tuple[bytes, str]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
        try:
            if cancel is not None:
                cancel._attach(conn)
            conn.request(method, self.prefix + path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            if cancel is not None and cancel.is_set:
                raise Cancelled("cancelled") from None
            raise BackendError("unreachable", f"cannot reach the THUNDER backend at {self.url}: {exc}") from None
        finally:
            if cancel is not None:
                cancel._detach()
            conn.close()
        if cancel is not None and cancel.is_set:
            raise Cancelled("cancelled")
        if resp.status >= 400:
            try:
                err = json.loads(data)["error"]
                raise BackendError(str(err.get("code", "error")), str(err.get("message", "")), resp.status)
            except (ValueError, KeyError, TypeError):
                raise BackendError("http", f"HTTP {resp.status}: {data[:200]!r}", resp.status) from None
        return data, resp.getheader("Content-Type", "")

    def _json(self, *args, **kwargs) -> dict:
        data, _ = self._request(*args, **kwargs)
        try:
            out = json.loads(data)
        except ValueError:
            raise BackendError("bad_reply", "the backend sent something that is not JSON") from None
        if not isinstance(out, dict):
            raise BackendError("bad_reply", "the backend sent JSON that is not an object")
        return out

    def health(self, timeout: float = 2.0) -> dict:
        return self._json("GET", "/v1/health", timeout=timeout)

    def model(self) -> dict:
        return self._json("GET", "/v1/model")

    def head(self) -> bytes:
        return self._request("GET", "/v1/model/head")[0]

    def animate(self, audio: bytes, filename: str, options: dict, cancel: Cancel | None = None) -> dict:
        fields = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in options.items() if v is not None}
        body, ctype = encode_multipart(fields, {"audio": (filename, audio)})
        return self._json("POST", "/v1/animate", body, ctype, cancel=cancel)

    def listen(self, payload: dict, cancel: Cancel | None = None) -> bytes:
        body = json.dumps(payload).encode()
        return self._request("POST", "/v1/listen", body, "application/json", cancel=cancel)[0]
