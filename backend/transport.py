"""HTTP/1.1 under the service: uvicorn's h11 protocol with timeouts, a connection cap,
JSON errors, and a hook that tells the service the server is stopping.

What stock uvicorn does not do, and why it matters here:
- No header read timeout: a client that opens a connection and never finishes its
  headers holds it for good (70 of them used up uvicorn's concurrency limit and every
  other client got a plain-text 503). Here a request has `header_timeout_s` from its
  first byte (or from the connection's opening) to finish its line and headers, and a
  request body may go silent for at most `idle_timeout_s`; then the client gets a JSON
  408 `timeout` and the connection is closed. Idle keep-alive connections close after
  `keep_alive_s` as before.
- Its own errors are plain text (400 for a malformed request, 503 over the limit).
  Here they are the protocol's JSON; the request limit lives in middleware.Guard, and
  connections past `max_connections` get a JSON 503 `busy` and are closed.
- On shutdown (SIGTERM, or `should_exit`) uvicorn asks each connection to finish; the
  first such call tells the service (`on_shutdown`), whose waiting requests then answer
  503 `shutting_down` at once instead of being cut off after the grace period.

`server(app, settings, ...)` builds the uvicorn.Server `thunder serve` and the tests run.
"""

from __future__ import annotations

import json
import logging

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from backend.settings import Settings

log = logging.getLogger("thunder.service")


def raw_error(status: int, code: str, message: str, headers: dict | None = None) -> bytes:
    """A whole HTTP/1.1 response carrying the protocol's JSON error, for use below the app."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    reason = {400: "Bad Request", 408: "Request Timeout", 503: "Service Unavailable"}.get(status, "Error")
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class GuardedH11(H11Protocol):
    """uvicorn's H11Protocol with the timeouts, cap and JSON errors described above.
    Class attributes are set per server by `protocol_class`."""

    header_timeout_s = 10.0
    idle_timeout_s = 30.0
    max_connections = 256
    on_shutdown = None  # callable, or None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.limit_concurrency = None  # middleware.Guard answers over-limit requests, in JSON
        self._read_timer = None

    # -- connection life --
    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("more than %d connections open: refusing one", self.max_connections)
            self._refuse(
                503, "busy", f"more than {self.max_connections} connections open; retry later", {"Retry-After": "5"}
            )
            return
        self._arm(self.header_timeout_s, "headers")

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._awaiting_request():
            # Still no complete request line and headers: the deadline counts from the first
            # byte (or the connection's opening), so a client trickling bytes cannot extend it.
            if self._read_timer is None:
                self._arm(self.header_timeout_s, "headers")
        elif self.cycle is not None and self.cycle.more_body and not self.cycle.response_started:
            self._arm(self.idle_timeout_s, "body")  # any data restarts the silence clock
        else:
            self._disarm()

    def on_response_complete(self) -> None:
        self._disarm()
        super().on_response_complete()  # arms uvicorn's keep-alive timer for the next request

    def shutdown(self) -> None:
        if self.on_shutdown is not None:
            self.on_shutdown()
        super().shutdown()

    # -- timers --
    def _awaiting_request(self) -> bool:
        return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(seconds, self._timed_out, what, seconds)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _timed_out(self, what: str, seconds: float) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if what == "body" and self.cycle is not None:
            if self.cycle.response_started or not self.cycle.more_body:
                return
            if self.flow.read_paused:  # the app has not read what it has yet: not the client's fault
                self._arm(seconds, what)
                return
            # The app is waiting on the body: it sees a disconnect and its request ends.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self._refuse(408, "timeout", f"no complete request {what} within {seconds:g} s; connection closed")

    def _refuse(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        self.transport.write(raw_error(status, code, message, headers))
        self.transport.close()

    # -- uvicorn's plain-text error, in JSON --
    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "bad_request", msg)


def protocol_class(settings: Settings, on_shutdown=None) -> type[GuardedH11]:
    """A GuardedH11 with this server's limits."""
    return type(
        "ThunderH11",
        (GuardedH11,),
        {
            "header_timeout_s": settings.header_timeout_s,
            "idle_timeout_s": settings.idle_timeout_s,
            "max_connections": settings.max_connections,
            "on_shutdown": staticmethod(on_shutdown) if on_shutdown else None,
        },
    )


def server(
    app, settings: Settings, host: str, port: int, log_level: str = "info", graceful_s: float = 3.0
) -> uvicorn.Server:
    """The uvicorn server for `app` (create_app's), with GuardedH11 and the service told when
    shutdown begins. After `graceful_s` of shutdown, requests still open are cancelled
    (middleware.Guard answers them 503 `shutting_down` if nothing was sent yet)."""
    state = app.state.service
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        http=protocol_class(settings, state.worker.begin_shutdown),
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=graceful_s,
    )
    return uvicorn.Server(config)
