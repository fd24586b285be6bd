"""The service's routes (docs/protocol.md), as one router over typed dependencies.

Routes read what they need from the app's state through `Depends`: the engine
(503 `no_model` when none loaded), the worker, the settings. They check and
decode requests on the event loop, and leave model work to the worker thread.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Annotated, Literal, Optional

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from backend import __version__, jobs
from backend.audio import MAX_TIME
from backend.contracts import MAX_ABS_EXP, MAX_ABS_JAW, N_EXP, N_JAW
from backend.engine import SAMPLES_PER_FRAME
from backend.errors import ApiError, checked, shutting_down
from backend.samplers import SAMPLERS
from backend.settings import Settings
from backend.worker import NDJSON, JobStream, JobWatch, Worker, progress_lines, wants_stream


@dataclass
class ServiceState:
    """What the routes share: set once by create_app (`app.state.service`)."""

    engine: object | None  # backend.engine.Engine, or None with load_error
    load_error: str | None
    worker: Worker
    settings: Settings
    decode_slots: asyncio.Semaphore  # concurrent decodes (2 cores)


# ---- dependencies ----


def service_state(request: Request) -> ServiceState:
    return request.app.state.service


State = Annotated[ServiceState, Depends(service_state)]


def loaded_engine(state: State):
    if state.engine is None:
        raise ApiError(503, "no_model", state.load_error or "no model loaded")
    return state.engine


Engine = Annotated[object, Depends(loaded_engine)]
BEARER = HTTPBearer(auto_error=False, description="token from $XDG_CONFIG_HOME/thunder/token")


def require_token(_cred: Annotated[Optional[HTTPAuthorizationCredentials], Depends(BEARER)] = None):
    """Documents the bearer scheme in the OpenAPI schema; middleware.AccessCheck enforces it."""


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


def _rows(width: int, limit: float | None = None, max_frames: int | None = None, strict: bool = False):
    """A [n_frames, width] float array as JSON lists, with its shape (and value range) stated."""
    value = Annotated[float, Field(ge=-limit if limit else None, le=limit, strict=strict, allow_inf_nan=False)]
    row = Annotated[list[value], Field(min_length=width, max_length=width)]
    return Annotated[
        list[row], Field(min_length=1, max_length=max_frames, description=f"[n_frames, {width}] float rows")
    ]


AUDIO_TYPES = ("audio/wav", "audio/flac", "audio/ogg", "audio/mpeg", "application/octet-stream")
B64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


def _b64(width: int, max_frames: int | None = None):
    size = None if max_frames is None else 4 * -(-(max_frames * width * 4) // 3)
    return Annotated[
        str,
        Field(
            max_length=size,
            description=f"base64 of float32 little-endian [n_frames, {width}], row-major",
            json_schema_extra={"pattern": B64_PATTERN},
        ),
    ]


class TakeOut(BaseModel):
    seed: int
    score: float
    exp: Optional[_rows(N_EXP)] = None
    jaw: Optional[_rows(N_JAW)] = None
    exp_b64: Optional[_b64(N_EXP)] = None
    jaw_b64: Optional[_b64(N_JAW)] = None


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


@functools.lru_cache(maxsize=4)
def listen_model(max_frames: int) -> type[BaseModel]:
    """The /v1/listen body for takes of at most `max_frames` frames: what is checked (strict
    numbers: no strings or booleans as floats, finite, in range) and what the schema states.
    Exactly one of `exp`/`exp_b64` and of `jaw`/`jaw_b64`; both arrays the same length
    (jobs.parse_take checks what a schema cannot say)."""
    return create_model(
        "ListenRequest",
        __config__=ConfigDict(extra="ignore"),
        exp=(Optional[_rows(N_EXP, MAX_ABS_EXP, max_frames, strict=True)], None),
        jaw=(Optional[_rows(N_JAW, MAX_ABS_JAW, max_frames, strict=True)], None),
        exp_b64=(Optional[_b64(N_EXP, max_frames)], None),
        jaw_b64=(Optional[_b64(N_JAW, max_frames)], None),
        n_frames=(
            Optional[
                Annotated[
                    int, Field(ge=1, le=max_frames, strict=True, description="frame count, checked against the arrays")
                ]
            ],
            None,
        ),
    )


ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 413, 415, 422, 503)}
STREAMED = {
    "description": "with `Accept: application/x-ndjson` or `stream=true`: progress lines, "
    "then the result (docs/protocol.md)",
    "content": {NDJSON: {}},
}

public = APIRouter(prefix="/v1")
router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], responses=ERRORS)


async def run_job(request: Request, state: ServiceState, fn):
    """Queue `fn(cancel)` on the worker and wait for its result (see worker.JobWatch)."""
    watch = JobWatch(state.worker, fn, state.settings.timeout_s)
    try:
        while not await watch.tick(request):
            pass
        return watch.result()
    finally:
        watch.abandon()


@public.get("/health", response_model=Health)
async def health(state: State):
    """Liveness and what is loaded; the one API endpoint without a token."""
    engine = state.engine
    return Health(
        status="ok" if engine is not None else "no_model",
        version=__version__,
        bundle=engine.manifest.get("name") if engine is not None else None,
        device=str(engine.device) if engine is not None else None,
        queue=state.worker.held,
        detail=state.load_error,
    )


class Ready(BaseModel):
    status: Literal["ready"]
    bundle: Optional[str]


@public.get("/ready", response_model=Ready, responses={503: {"model": ErrorResponse}})
async def ready(state: State):
    """Readiness for a supervisor or a load balancer (no token): 200 once a model is loaded
    and the server takes work; 503 `no_model` without a model, 503 `shutting_down` while
    it stops. (`/v1/health` answers 200 whenever the process is up.)"""
    if state.worker.closing.is_set():
        raise shutting_down()
    engine = loaded_engine(state)
    return Ready(status="ready", bundle=engine.manifest.get("name"))


@router.get("/model")
async def model(engine: Engine):
    """The bundle manifest plus where to fetch its head file."""
    return {**engine.manifest, "head_url": "/v1/model/head"}


@router.get("/model/head", response_class=FileResponse)
async def model_head(engine: Engine):
    """The bundle's head.npz (sha256 in the manifest)."""
    return FileResponse(engine.head_path, media_type="application/octet-stream", filename="head.npz")


@router.post("/animate", response_model=AnimateResponse, responses={**ERRORS, 200: STREAMED})
async def animate(
    request: Request,
    state: State,
    audio: Annotated[UploadFile, File(description="WAV, FLAC, OGG or MP3; any rate and channels")],
    takes: Annotated[int, Form(ge=1, le=jobs.MAX_TAKES)] = 4,
    seed: Annotated[int, Form(ge=0, le=jobs.MAX_SEED + 1 - jobs.MAX_TAKES)] = 0,
    preset: Annotated[Literal[jobs.PRESET_NAMES], Form()] = "default",
    sampler: Annotated[Optional[Literal[SAMPLERS]], Form()] = None,
    steps: Annotated[Optional[int], Form(ge=1, le=jobs.MAX_STEPS)] = None,
    guidance: Annotated[float, Form(ge=0.0, le=jobs.MAX_GUIDANCE, allow_inf_nan=False)] = 1.0,
    start: Annotated[Optional[float], Form(ge=0.0, le=MAX_TIME, allow_inf_nan=False)] = None,
    end: Annotated[Optional[float], Form(gt=0.0, le=MAX_TIME, allow_inf_nan=False)] = None,
    rank: Annotated[bool, Form()] = False,
    encoding: Annotated[Literal[jobs.ENCODINGS], Form()] = "json",
    stream: Annotated[bool, Form(description="answer as NDJSON progress lines, then the result")] = False,
):
    """Speech → takes of FLAME expression (T×50) and jaw (T×3) at 25 fps."""
    opts = jobs.AnimateOptions(
        takes=takes,
        seed=seed,
        preset=preset,
        sampler=sampler,
        steps=steps,
        guidance=guidance,
        start=start,
        end=end,
        rank=rank,
        encoding=encoding,
    )
    checked(opts.check)
    # Decode before queueing: bad audio is answered at once (with or without a model),
    # and a queued job holds 16 kHz samples rather than the upload.
    async with state.decode_slots:
        pcm, t_decode = await asyncio.to_thread(
            checked, lambda: jobs.decode(audio.file, opts, state.settings.max_seconds)
        )
    engine = loaded_engine(state)
    checked(lambda: jobs.check_cost(engine, len(pcm) // SAMPLES_PER_FRAME, opts, state.settings.max_cost))
    tracker = jobs.ProgressTracker() if wants_stream(request, stream) else None

    def work(cancel):
        out = jobs.animate_audio(engine, pcm, opts, cancel=cancel, timings={"decode": t_decode}, tracker=tracker)
        # Serialise on the worker: a long clip's JSON must not stall the event loop.
        return jobs.to_json(out, opts.encoding)

    if tracker is not None:
        # Queue now (so `busy` is still a plain 503), then answer with the progress stream.
        watch = JobWatch(state.worker, work, state.settings.timeout_s)
        return JobStream(progress_lines(request, watch, tracker), watch)
    body = await run_job(request, state, work)
    return Response(body, media_type="application/json")


@router.post(
    "/listen",
    responses={**ERRORS, 200: {"content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}}},
    response_class=Response,
)
async def listen(request: Request, state: State):
    """A take → M2S → Griffin-Lim: hear what the face says (16 kHz mono WAV).

    The body (schema below: `ListenRequest`) is read with its own size limit and parsed
    on a thread: a long take's JSON must not stall the event loop."""
    max_frames = state.settings.max_frames
    body = await request.body()
    # Every value but the first of each array follows a comma: more commas than the longest
    # take has values is refused before parsing, which keeps parsing memory to a valid take's.
    if body.count(b",") > max_frames * (N_EXP + N_JAW + 1) + 16:
        raise ApiError(413, "too_large", f"the take holds more values than {max_frames} frames can")
    async with state.decode_slots:
        exp, jaw = await asyncio.to_thread(checked, functools.partial(parse_listen_body, body, max_frames))
    body = None  # the raw bytes are no longer needed while the job runs
    engine = loaded_engine(state)
    wav = await run_job(request, state, lambda cancel: jobs.listen(engine, exp, jaw, cancel=cancel))
    return Response(wav, media_type="audio/wav")


def parse_listen_body(body: bytes | str, max_frames: int):
    """exp (T, 50), jaw (T, 3) from a /v1/listen body; a 422 ApiError naming the bad fields."""
    try:
        take = listen_model(max_frames).model_validate_json(body)
    except ValidationError as exc:
        raise ApiError(422, "bad_option", validation_message(exc.errors())) from None
    # The validated fields as they are: model_dump would copy ~800k floats under the GIL.
    return jobs.parse_take({k: v for k, v in take if v is not None}, max_frames)


def validation_message(errors) -> str:
    """Pydantic's errors as one line naming the fields (`exp.0.3: Input should be ...`)."""
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "form"))
        parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def document_limits(schema: dict, settings: Settings) -> dict:
    """The served OpenAPI schema with this server's limits: the listen body (from the same
    model that checks it) and the upload size."""
    fields = listen_model(settings.max_frames).model_json_schema()["properties"]

    def given(*names) -> dict:  # a form of the body: these fields required, not null
        present = {n: next(s for s in fields[n]["anyOf"] if s.get("type") != "null") for n in names}
        present["n_frames"] = next(s for s in fields["n_frames"]["anyOf"] if s.get("type") != "null")
        return {"type": "object", "required": list(names), "properties": present}

    body = {
        "title": "ListenRequest",
        "oneOf": [given("exp", "jaw"), given("exp_b64", "jaw_b64")],
        "description": f"one take, as lists or as base64 (exp and jaw of the same length): at most "
        f"{settings.max_frames} frames, body at most {settings.listen_max_bytes} bytes",
    }
    schema.setdefault("components", {}).setdefault("schemas", {})["ListenRequest"] = body
    schema["paths"]["/v1/listen"]["post"]["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ListenRequest"}}},
    }
    upload = int(settings.max_upload_mb * 2**20)
    # Which media types the `audio` part may be: a schema-driven client can then send real audio.
    form = schema["paths"]["/v1/animate"]["post"]["requestBody"]["content"]["multipart/form-data"]
    form["encoding"] = {"audio": {"contentType": ", ".join(AUDIO_TYPES)}}
    for name, item in schema["components"]["schemas"].items():
        if name.startswith("Body_animate") and "audio" in item.get("properties", {}):
            item["properties"]["audio"]["maxLength"] = upload
            item["properties"]["audio"]["description"] = (
                f"WAV, FLAC, OGG or MP3; any rate and channels; at most {settings.max_seconds:g} s "
                f"after start/end and {upload} bytes"
            )
    return schema
