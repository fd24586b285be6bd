"""ASGI middleware of the service: every answer is the protocol's JSON (Guard), who may
ask (host, origin, token) and how much (body size).

Pure ASGI, not Starlette's BaseHTTPMiddleware: they must not wrap `receive` in a
way that hides disconnects, and they answer before any body is read.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.exceptions import HTTPException as StarletteHTTPException

from backend import security
from backend.errors import error_response, shutting_down

log = logging.getLogger("thunder.service")


class Guard:
    """Outermost layer: no request gets past it without a JSON answer.

    - While the server stops (`closing` set), new requests are answered 503 `shutting_down`.
    - More than `max_in_flight` requests at once are answered 503 `busy` (uvicorn's own
      limit would answer in plain text).
    - Whatever escapes the app becomes JSON if nothing was sent yet: 503 `shutting_down`
      for a request cancelled as the server stops, 500 `internal` for a bug. Nothing is
      re-raised to uvicorn, which would send a text/plain 500 and log a second traceback
      (the service's exception handler has logged the bug already).
    """

    def __init__(self, app, closing, max_in_flight: int):
        self.app, self.closing, self.max_in_flight = app, closing, max_in_flight
        self.in_flight = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.closing.is_set():
            exc = shutting_down()
            return await error_response(exc.status, exc.code, exc.message, exc.headers)(scope, receive, send)
        if self.in_flight >= self.max_in_flight:
            return await error_response(
                503,
                "busy",
                f"{self.in_flight} requests in progress; retry later",
                {"Retry-After": "5", "Connection": "close"},
            )(scope, receive, send)
        started = False

        async def tracked(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        self.in_flight += 1
        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:  # uvicorn gave up waiting for us at shutdown
            if not started:
                exc = shutting_down()
                await error_response(exc.status, exc.code, exc.message, exc.headers)(scope, receive, send)
        except Exception as exc:
            if not started:
                log.error("unexpected error", exc_info=exc)
                await error_response(500, "internal", f"internal error: {type(exc).__name__}")(scope, receive, send)
        finally:
            self.in_flight -= 1


class AccessCheck:
    """Host header on every path, Origin on every path, bearer token on all but the public
    ones, before any body is read.

    A browser names the page's origin in `Origin` on every cross-origin request (and on
    same-origin POSTs); the add-on and curl send none. A request carrying an Origin that is
    not allowed is refused even with the right token, so a leaked token is not enough for
    a web page to drive the backend.
    """

    PUBLIC = frozenset({"/v1/health", "/v1/ready", "/openapi.json"})

    def __init__(
        self, app, token: str, allow_remote: bool, hosts: frozenset[str], origins: frozenset[str] = frozenset()
    ):
        self.app, self.token, self.allow_remote, self.hosts = app, token, allow_remote, hosts
        self.origins = origins

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope.get("headers") or ())
            host = headers.get(b"host", b"").decode("latin-1")
            if not security.host_ok(host, self.allow_remote, self.hosts):
                response = error_response(400, "bad_host", "Host header is not a loopback name (DNS rebinding guard)")
                return await response(scope, receive, send)
            origin = headers.get(b"origin")
            if origin is not None and not security.origin_ok(origin.decode("latin-1"), self.origins):
                response = error_response(
                    403, "bad_origin", "requests from web pages are refused (Origin not allowed; see --allowed-origin)"
                )
                return await response(scope, receive, send)
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            if scope.get("path") not in self.PUBLIC and not security.bearer_ok(authorization, self.token):
                response = error_response(
                    401, "unauthorized", "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
                )
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


class BodyLimit:
    """Refuse bodies over their path's limit (`limits`, else `max_bytes`): at once from
    Content-Length, else while streaming.

    (FastAPI's own `max_body_size` answers known-length bodies in plain text, not
    the protocol's JSON error.)
    """

    def __init__(self, app, max_bytes: int, limits: dict[str, int] | None = None):
        self.app, self.max_bytes, self.limits = app, max_bytes, dict(limits or {})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits.get(scope.get("path"), self.max_bytes)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        too_large = f"request body larger than {limit / 2**20:g} MB"
        if length is not None and length.isdigit() and int(length) > limit:
            return await error_response(413, "too_large", too_large)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise StarletteHTTPException(413, too_large)
            return message

        return await self.app(scope, counted, send)
