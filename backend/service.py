"""The HTTP service (`thunder serve`): FastAPI over one engine and one worker.

docs/protocol.md is the contract. Every model call runs on a single worker
thread, so concurrent requests queue (up to `max_queue`, then 503 `busy`) and
the engine is never used from two threads at once. Audio is decoded before
queueing (bad audio is answered at once, even without a model). A request waits
on its job while watching the connection: a client that goes away, or a request
that outlives `timeout_s`, sets the job's cancel event and the engine stops at
its next step. Uploads larger than 1 MB are spooled to disk by Starlette, the
body size is capped (`BodyLimit`) and decoding is streamed, so memory stays
bounded by the queue length times one clip's 16 kHz samples.

`POST /v1/animate` can also answer as a stream (`Accept: application/x-ndjson`
or `stream=true`): one JSON line of progress per poll while the job runs, then
the result (or an error) as the last line. Both forms watch the job the same
way (`JobWatch`); the stream's body ends however the response ends, and so
does its job.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend import __version__, jobs, security
from backend.audio import MAX_TIME, AudioError
from backend.bundle import BundleError
from backend.contracts import FPS
from backend.engine import Cancelled
from backend.samplers import SAMPLERS

log = logging.getLogger("thunder.service")

DEFAULT_BUNDLE = Path(__file__).resolve().parent / "models" / "thunder-base"
NDJSON = "application/x-ndjson"
POLL_S = 0.1          # how often a waiting request checks its connection (and a stream sends progress)
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 413: "too_large", 415: "bad_audio", 422: "bad_option"}


@dataclass(frozen=True)
class Settings:
    """Limits and switches; `thunder serve` flags map onto these one to one."""

    bundle: Optional[str] = None
    device: str = "auto"
    threads: Optional[int] = None       # onnxruntime intra-op threads (None: one per core)
    allow_remote: bool = False
    extra_hosts: tuple[str, ...] = ()
    max_upload_mb: float = 200.0
    max_seconds: float = 600.0         # of audio per request (after start/end cropping)
    max_queue: int = 8                 # jobs waiting or running; more get 503 busy
    timeout_s: float = 600.0           # queue wait + work, per request


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def default_bundle() -> Path:
    return Path(os.environ.get("THUNDER_BUNDLE") or DEFAULT_BUNDLE)


def load_engine(bundle, device: str = "auto", threads: int | None = None):
    """(engine, None) or (None, reason): a missing or broken bundle must not stop the server."""
    bundle = Path(bundle) if bundle else default_bundle()
    if not (bundle / "manifest.json").is_file():
        return None, f"no model bundle at {bundle} (manifest.json missing); start with --bundle DIR"
    from backend.engine import Engine
    try:
        return Engine(bundle, device=device, threads=threads), None
    except Exception as exc:            # BundleError, onnxruntime load errors: report, keep serving
        log.exception("could not load bundle %s", bundle)
        return None, f"could not load bundle {bundle}: {exc}"


class Worker:
    """One thread runs every job in arrival order; at most `max_queue` jobs held."""

    def __init__(self, max_queue: int):
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="thunder-worker")
        self._lock = threading.Lock()
        self._cancels: set[threading.Event] = set()       # one per job held
        self.max_queue = max_queue

    @property
    def held(self) -> int:
        return len(self._cancels)

    def submit(self, fn, cancel: threading.Event) -> concurrent.futures.Future:
        with self._lock:
            if len(self._cancels) >= self.max_queue:
                raise ApiError(503, "busy", f"{len(self._cancels)} jobs already queued; retry later",
                               headers={"Retry-After": "5"})
            self._cancels.add(cancel)

        def job():
            try:
                if cancel.is_set():                      # cancelled while queued: skip the work
                    raise Cancelled("cancelled while queued")
                return fn(cancel)
            finally:
                with self._lock:
                    self._cancels.discard(cancel)
        return self._pool.submit(job)

    def close(self) -> None:
        """Stop: cancel every held job (the running one stops at its next step)."""
        with self._lock:
            for cancel in self._cancels:
                cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


class JobWatch:
    """A queued job as its request sees it: cancelled if the client leaves or time runs out."""

    def __init__(self, worker: Worker, fn, timeout_s: float):
        self.cancel = threading.Event()
        future = worker.submit(fn, self.cancel)              # `busy` is raised here, before any answer
        future.add_done_callback(lambda f: f.cancelled() or f.exception())   # never "unretrieved"
        self._waiter = asyncio.wrap_future(future)
        self._timeout_s = timeout_s
        self._deadline = asyncio.get_running_loop().time() + timeout_s

    async def tick(self, request: Request) -> bool:
        """Wait up to POLL_S: True once the job has ended. A gone client or a passed
        deadline cancels the job and raises the protocol's error."""
        done, _ = await asyncio.wait({self._waiter}, timeout=POLL_S)
        if done:
            return True
        if await request.is_disconnected():
            self.cancel.set()
            raise ApiError(499, "cancelled", "client disconnected; job cancelled")
        if asyncio.get_running_loop().time() > self._deadline:
            self.cancel.set()
            raise ApiError(503, "timeout", f"request took longer than {self._timeout_s:g} s")
        return False

    def result(self):
        return _job_result(self._waiter)

    def abandon(self) -> None:
        """Nobody will read the result: stop the job unless it has already ended."""
        if not self._waiter.done():
            self.cancel.set()


class JobStream(StreamingResponse):
    """An NDJSON answer whose job is cancelled however the response ends: finished,
    client gone, server stopping, or never started sending (the body generator's own
    `finally` would not run then)."""

    media_type = NDJSON

    def __init__(self, lines, watch: JobWatch):
        super().__init__(lines, headers={"Cache-Control": "no-store"})
        self.watch = watch

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.watch.abandon()


def _line(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def _error_line(exc: ApiError) -> bytes:
    return _line({"event": "error", "code": exc.code, "status": exc.status, "message": exc.message})


def _result_line(watch: JobWatch) -> bytes:
    """The stream's last line: the finished job's payload tagged as the result, or its error."""
    try:
        body = watch.result()
    except ApiError as exc:
        return _error_line(exc)
    except Exception as exc:            # headers are sent: a bug can only be reported in the stream
        log.exception("unexpected error in a streamed job")
        return _error_line(ApiError(500, "internal", f"internal error: {type(exc).__name__}"))
    # The worker already serialised the payload (`{...}`); splice the tag in rather than
    # re-encode a long clip's JSON on the event loop.
    return b'{"event":"result",' + body[1:] + b"\n"


async def progress_lines(request: Request, watch: JobWatch, tracker: jobs.ProgressTracker):
    """The streaming body: the tracker's snapshot whenever it changed, polled every POLL_S
    (so at most 1/POLL_S lines a second), the final one (fraction 1.0 on success)
    included, then the result line."""
    sent, done = None, False
    try:
        while True:
            now = tracker.snapshot()
            if now is not sent:
                sent = now
                yield _line({"event": "progress", **now.as_dict()})
            if done:
                break
            done = await watch.tick(request)
    except ApiError as exc:             # disconnect or timeout: the job is cancelled already
        yield _error_line(exc)
        return
    yield _result_line(watch)


def wants_stream(request: Request, stream: bool) -> bool:
    return stream or NDJSON in request.headers.get("accept", "")


# ---- response models (documentation in the OpenAPI schema) ----

class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok", "no_model"]
    version: str
    bundle: Optional[str]
    device: Optional[str]
    queue: int
    detail: Optional[str] = None


class TakeOut(BaseModel):
    seed: int
    score: float
    exp: Optional[list[list[float]]] = None
    jaw: Optional[list[list[float]]] = None
    exp_b64: Optional[str] = None
    jaw_b64: Optional[str] = None


class AnimateResponse(BaseModel):
    fps: int
    n_frames: int
    duration: float
    sample_rate: int
    sampler: str
    steps: int
    guidance: float
    encoding: Literal["json", "b64"]
    takes: list[TakeOut]
    timings: dict[str, float]


class ListenRequest(BaseModel):
    exp: Optional[list[list[float]]] = Field(None, description="[n_frames, 50] expression coefficients")
    jaw: Optional[list[list[float]]] = Field(None, description="[n_frames, 3] jaw axis-angle")
    exp_b64: Optional[str] = Field(None, description="base64 float32 little-endian, row-major")
    jaw_b64: Optional[str] = None
    n_frames: Optional[int] = Field(None, ge=1)


BEARER = HTTPBearer(auto_error=False, description="token from $XDG_CONFIG_HOME/thunder/token")
ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 413, 415, 422, 503)}


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


def create_app(settings: Settings = Settings(), token: str | None = None, engine=None) -> FastAPI:
    """The ASGI app. `token=None` reads (or creates) the user's token file."""
    token = token if token is not None else security.load_or_create_token()
    load_error = None
    if engine is None:
        engine, load_error = load_engine(settings.bundle, settings.device, settings.threads)
    worker = Worker(settings.max_queue)
    decode_slots = asyncio.Semaphore(2)        # concurrent decodes (2 cores)
    hosts = security.allowed_hosts(settings.allow_remote, settings.extra_hosts)
    max_frames_listen = int(settings.max_seconds * FPS)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        worker.close()

    app = FastAPI(title="THUNDER backend", version=__version__, docs_url=None, redoc_url=None,
                  description="Speech → FLAME expression + jaw takes. See docs/protocol.md.", lifespan=lifespan)
    app.state.engine, app.state.worker, app.state.settings = engine, worker, settings

    app.add_middleware(BodyLimit, max_bytes=int(settings.max_upload_mb * 1024 * 1024))
    app.add_middleware(AccessCheck, token=token, allow_remote=settings.allow_remote, hosts=hosts)  # outermost

    def require_token(_cred: Annotated[Optional[HTTPAuthorizationCredentials], Depends(BEARER)] = None):
        """Documents the bearer scheme in the OpenAPI schema; AccessCheck enforces it."""

    def require_engine():
        if engine is None:
            raise ApiError(503, "no_model", load_error or "no model loaded")
        return engine

    Authed = Depends(require_token)

    @app.exception_handler(ApiError)
    async def _api_error(_request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request, exc: RequestValidationError):
        parts = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "form"))
            parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
        return error_response(422, "bad_option", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request, exc: StarletteHTTPException):
        return error_response(exc.status_code, HTTP_CODES.get(exc.status_code, "error"), str(exc.detail),
                              getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request, exc: Exception):
        log.exception("unexpected error")
        return error_response(500, "internal", f"internal error: {type(exc).__name__}")

    async def run_job(request: Request, fn):
        """Queue `fn(cancel)` on the worker and wait for its result (see JobWatch)."""
        watch = JobWatch(worker, fn, settings.timeout_s)
        try:
            while not await watch.tick(request):
                pass
            return watch.result()
        finally:
            watch.abandon()

    def stream_job(request: Request, fn, tracker: jobs.ProgressTracker) -> JobStream:
        """Queue `fn(cancel)` now (so `busy` is still a plain 503) and answer with its progress stream."""
        watch = JobWatch(worker, fn, settings.timeout_s)
        return JobStream(progress_lines(request, watch, tracker), watch)

    @app.get("/v1/health", response_model=Health)
    async def health():
        """Liveness and what is loaded; the one API endpoint without a token."""
        return Health(status="ok" if engine is not None else "no_model", version=__version__,
                      bundle=engine.manifest.get("name") if engine is not None else None,
                      device=str(engine.device) if engine is not None else None,
                      queue=worker.held, detail=load_error)

    @app.get("/v1/model", dependencies=[Authed], responses=ERRORS)
    async def model():
        """The bundle manifest plus where to fetch its head file."""
        eng = require_engine()
        return {**eng.manifest, "head_url": "/v1/model/head"}

    @app.get("/v1/model/head", dependencies=[Authed], responses=ERRORS,
             response_class=FileResponse)
    async def model_head():
        """The bundle's head.npz (sha256 in the manifest)."""
        eng = require_engine()
        return FileResponse(eng.head_path, media_type="application/octet-stream", filename="head.npz")

    streamed = {"description": "with `Accept: application/x-ndjson` or `stream=true`: progress lines, "
                               "then the result (docs/protocol.md)", "content": {NDJSON: {}}}

    @app.post("/v1/animate", dependencies=[Authed], response_model=AnimateResponse,
              responses={**ERRORS, 200: streamed})
    async def animate(
        request: Request,
        audio: Annotated[UploadFile, File(description="WAV, FLAC, OGG or MP3; any rate and channels")],
        takes: Annotated[int, Form(ge=1, le=jobs.MAX_TAKES)] = 4,
        seed: Annotated[int, Form(ge=0, le=jobs.MAX_SEED + 1 - jobs.MAX_TAKES)] = 0,
        preset: Annotated[Literal[jobs.PRESET_NAMES], Form()] = "default",
        sampler: Annotated[Optional[Literal[SAMPLERS]], Form()] = None,
        steps: Annotated[Optional[int], Form(ge=1, le=jobs.MAX_STEPS)] = None,
        guidance: Annotated[float, Form(ge=0.0, le=jobs.MAX_GUIDANCE)] = 1.0,
        start: Annotated[Optional[float], Form(ge=0.0, le=MAX_TIME)] = None,
        end: Annotated[Optional[float], Form(gt=0.0, le=MAX_TIME)] = None,
        rank: Annotated[bool, Form()] = False,
        encoding: Annotated[Literal[jobs.ENCODINGS], Form()] = "json",
        stream: Annotated[bool, Form(description="answer as NDJSON progress lines, then the result")] = False,
    ):
        """Speech → takes of FLAME expression (T×50) and jaw (T×3) at 25 fps."""
        opts = jobs.AnimateOptions(takes=takes, seed=seed, preset=preset, sampler=sampler, steps=steps,
                                   guidance=guidance, start=start, end=end, rank=rank, encoding=encoding)
        _checked(opts.check)
        # Decode before queueing: bad audio is answered at once (with or without a model),
        # and a queued job holds 16 kHz samples rather than the upload.
        async with decode_slots:
            pcm, t_decode = await asyncio.to_thread(
                _checked, lambda: jobs.decode(audio.file, opts, settings.max_seconds))
        eng = require_engine()
        _checked(lambda: jobs.resolve_preset(eng, opts))
        tracker = jobs.ProgressTracker() if wants_stream(request, stream) else None

        def work(cancel):
            out = jobs.animate_audio(eng, pcm, opts, cancel=cancel, timings={"decode": t_decode},
                                     tracker=tracker)
            # Serialise on the worker: a long clip's JSON must not stall the event loop.
            return json.dumps(jobs.to_payload(out, opts.encoding), separators=(",", ":")).encode()

        if tracker is not None:
            return stream_job(request, work, tracker)
        body = await run_job(request, work)
        return Response(body, media_type="application/json")

    @app.post("/v1/listen", dependencies=[Authed], responses={**ERRORS, 200: {"content": {"audio/wav": {}}}},
              response_class=Response)
    async def listen(request: Request, take: ListenRequest):
        """A take → M2S → Griffin-Lim: hear what the face says (16 kHz mono WAV)."""
        exp, jaw = _checked(lambda: jobs.parse_take(take.model_dump(), max_frames_listen))
        eng = require_engine()
        wav = await run_job(request, lambda cancel: jobs.listen(eng, exp, jaw))
        return Response(wav, media_type="audio/wav")

    return app


def _checked(fn):
    try:
        return fn()
    except (jobs.OptionError, AudioError) as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None


def _job_result(waiter):
    """A finished job's value, its failure mapped onto protocol errors."""
    try:
        return waiter.result()
    except (jobs.OptionError, AudioError) as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None
    except Cancelled as exc:
        raise ApiError(499, "cancelled", str(exc)) from None
    except BundleError as exc:                       # e.g. listening with a bundle that has no M2S
        raise ApiError(503, "no_model", str(exc)) from None
    except MemoryError:
        raise ApiError(503, "busy", "out of memory for this request; try a shorter clip or fewer takes") from None
