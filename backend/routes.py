"""The service's routes (docs/protocol.md), as one router over typed dependencies.

Routes read what they need from the app's state through `Depends`: the engine
(503 `no_model` when none loaded), the worker, the settings. They check and
decode requests on the event loop, and leave model work to the worker thread.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Annotated, Literal, Optional

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from backend import __version__, jobs
from backend.audio import MAX_TIME
from backend.contracts import FPS
from backend.errors import ApiError, checked
from backend.samplers import SAMPLERS
from backend.settings import Settings
from backend.worker import NDJSON, JobStream, JobWatch, Worker, progress_lines, wants_stream


@dataclass
class ServiceState:
    """What the routes share: set once by create_app (`app.state.service`)."""

    engine: object | None              # backend.engine.Engine, or None with load_error
    load_error: str | None
    worker: Worker
    settings: Settings
    decode_slots: asyncio.Semaphore    # concurrent decodes (2 cores)


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


ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 413, 415, 422, 503)}
STREAMED = {"description": "with `Accept: application/x-ndjson` or `stream=true`: progress lines, "
                           "then the result (docs/protocol.md)", "content": {NDJSON: {}}}

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
    return Health(status="ok" if engine is not None else "no_model", version=__version__,
                  bundle=engine.manifest.get("name") if engine is not None else None,
                  device=str(engine.device) if engine is not None else None,
                  queue=state.worker.held, detail=state.load_error)


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
    checked(opts.check)
    # Decode before queueing: bad audio is answered at once (with or without a model),
    # and a queued job holds 16 kHz samples rather than the upload.
    async with state.decode_slots:
        pcm, t_decode = await asyncio.to_thread(
            checked, lambda: jobs.decode(audio.file, opts, state.settings.max_seconds))
    engine = loaded_engine(state)
    checked(lambda: jobs.resolve_preset(engine, opts))
    tracker = jobs.ProgressTracker() if wants_stream(request, stream) else None

    def work(cancel):
        out = jobs.animate_audio(engine, pcm, opts, cancel=cancel, timings={"decode": t_decode},
                                 tracker=tracker)
        # Serialise on the worker: a long clip's JSON must not stall the event loop.
        return json.dumps(jobs.to_payload(out, opts.encoding), separators=(",", ":"), allow_nan=False).encode()

    if tracker is not None:
        # Queue now (so `busy` is still a plain 503), then answer with the progress stream.
        watch = JobWatch(state.worker, work, state.settings.timeout_s)
        return JobStream(progress_lines(request, watch, tracker), watch)
    body = await run_job(request, state, work)
    return Response(body, media_type="application/json")


@router.post("/listen", responses={**ERRORS, 200: {"content": {"audio/wav": {}}}}, response_class=Response)
async def listen(request: Request, state: State, take: ListenRequest):
    """A take → M2S → Griffin-Lim: hear what the face says (16 kHz mono WAV)."""
    exp, jaw = checked(lambda: jobs.parse_take(take.model_dump(), int(state.settings.max_seconds * FPS)))
    engine = loaded_engine(state)
    wav = await run_job(request, state, lambda cancel: jobs.listen(engine, exp, jaw))
    return Response(wav, media_type="audio/wav")
