"""The HTTP service (`thunder serve`): FastAPI over one engine and one worker.

docs/protocol.md is the contract. This module wires the parts together:
`settings.Settings` (limits and switches), `middleware` (host, token, body
size: answered before any body is read), `routes` (the endpoints, over typed
dependencies), `worker` (the one thread every model call runs on, cancellation,
progress streams) and `errors` (one table from failures to protocol errors).
Audio is decoded before queueing, uploads over 1 MB are spooled to disk by
Starlette and decoding is streamed, so memory stays bounded by the queue length
times one clip's 16 kHz samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend import __version__, routes, security
from backend.bundle import default_bundle
from backend.errors import HTTP_CODES, ApiError, error_response
from backend.middleware import AccessCheck, BodyLimit, Guard
from backend.settings import Settings
from backend.worker import Worker

log = logging.getLogger("thunder.service")


def load_engine(bundle, device: str = "auto", threads: int | None = None, lanes: int | None = None):
    """(engine, None) or (None, reason): a missing or broken bundle must not stop the server."""
    bundle = Path(bundle) if bundle else default_bundle()
    if not (bundle / "manifest.json").is_file():
        return None, f"no model bundle at {bundle} (manifest.json missing); start with --bundle DIR"
    from backend.engine import Engine

    try:
        return Engine(bundle, device=device, threads=threads, lanes=lanes), None
    except Exception as exc:  # BundleError, onnxruntime load errors: report, keep serving
        log.exception("could not load bundle %s", bundle)
        return None, f"could not load bundle {bundle}: {exc}"


def _install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as the protocol's JSON (errors.py), whoever raised it."""

    @app.exception_handler(ApiError)
    async def _api_error(_request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request, exc: RequestValidationError):
        return error_response(422, "bad_option", routes.validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request, exc: StarletteHTTPException):
        return error_response(
            exc.status_code, HTTP_CODES.get(exc.status_code, "error"), str(exc.detail), getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request, exc: Exception):
        log.exception("unexpected error")
        return error_response(500, "internal", f"internal error: {type(exc).__name__}")


def create_app(settings: Settings = Settings(), token: str | None = None, engine=None) -> FastAPI:
    """The ASGI app. `token=None` reads (or creates) the user's token file."""
    token = token if token is not None else security.load_or_create_token()
    load_error = None
    if engine is None:
        engine, load_error = load_engine(settings.bundle, settings.device, settings.threads, settings.lanes)
    worker = Worker(settings.max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        worker.close()

    app = FastAPI(
        title="THUNDER backend",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        description="Speech → FLAME expression + jaw takes. See docs/protocol.md.",
        lifespan=lifespan,
    )
    app.state.engine, app.state.worker, app.state.settings = engine, worker, settings
    app.state.service = routes.ServiceState(engine, load_error, worker, settings, asyncio.Semaphore(2))
    app.add_middleware(
        BodyLimit, max_bytes=int(settings.max_upload_mb * 1024 * 1024), limits={"/v1/listen": settings.listen_max_bytes}
    )
    hosts = security.allowed_hosts(settings.allow_remote, settings.extra_hosts)
    app.add_middleware(
        AccessCheck,
        token=token,
        allow_remote=settings.allow_remote,
        hosts=hosts,
        origins=security.normal_origins(settings.allowed_origins),
    )
    app.add_middleware(Guard, closing=worker.closing, max_in_flight=settings.max_in_flight)  # outermost
    _install_error_handlers(app)
    app.include_router(routes.public)
    app.include_router(routes.router)

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = routes.document_limits(FastAPI.openapi(app), settings)
        return app.openapi_schema

    app.openapi = openapi
    return app
