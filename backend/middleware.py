"""ASGI middleware of the service: who may ask (host, token) and how much (body size).

Pure ASGI, not Starlette's BaseHTTPMiddleware: they must not wrap `receive` in a
way that hides disconnects, and they answer before any body is read.
"""
from __future__ import annotations

from starlette.exceptions import HTTPException as StarletteHTTPException

from backend import security
from backend.errors import error_response


class AccessCheck:
    """Host header on every path, bearer token on all but the public ones, before any body is read.

    Pure ASGI middleware: it must not wrap `receive`, or disconnects go unseen.
    """

    PUBLIC = frozenset({"/v1/health", "/openapi.json"})

    def __init__(self, app, token: str, allow_remote: bool, hosts: frozenset[str]):
        self.app, self.token, self.allow_remote, self.hosts = app, token, allow_remote, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope.get("headers") or ())
            host = headers.get(b"host", b"").decode("latin-1")
            if not security.host_ok(host, self.allow_remote, self.hosts):
                response = error_response(400, "bad_host",
                                          "Host header is not a loopback name (DNS rebinding guard)")
                return await response(scope, receive, send)
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            if scope.get("path") not in self.PUBLIC and not security.bearer_ok(authorization, self.token):
                response = error_response(401, "unauthorized", "missing or wrong bearer token",
                                          {"WWW-Authenticate": "Bearer"})
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


class BodyLimit:
    """Refuse bodies over `max_bytes`: at once from Content-Length, else while streaming.

    (FastAPI's own `max_body_size` answers known-length bodies in plain text, not
    the protocol's JSON error.)
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        too_large = f"request body larger than {self.max_bytes / 2**20:g} MB"
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await error_response(413, "too_large", too_large)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise StarletteHTTPException(413, too_large)
            return message
        return await self.app(scope, counted, send)
