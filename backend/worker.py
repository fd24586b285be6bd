"""The one worker thread every model call runs on, and how a request waits for its job.

Concurrent requests queue (up to `max_queue`, then 503 `busy`) and the engine is
never used from two threads at once. A request waits on its job while watching
the connection: a client that goes away, or a request that outlives its timeout,
sets the job's cancel event and the engine stops at its next step. A streamed
answer (NDJSON progress lines, then the result) watches its job the same way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading

from fastapi import Request
from fastapi.responses import StreamingResponse

from backend import jobs, memory
from backend.engine import Cancelled
from backend.errors import ApiError, protocol_error, shutting_down

log = logging.getLogger("thunder.service")

NDJSON = "application/x-ndjson"
POLL_S = 0.1  # how often a waiting request checks its connection (and a stream sends progress)
TRIM_AFTER_BYTES = 64 << 20  # give freed heap back to the system once a job leaves this much of it


class Worker:
    """One thread runs every job in arrival order; at most `max_queue` jobs held.

    A job is held from `submit` until it ends, or until it is dropped while still
    queued (`drop`: its client left), so a gone client frees its place in the queue
    at once rather than when the worker reaches it. `begin_shutdown` marks the
    worker closing: waiting requests then answer `shutting_down` (JobWatch.tick).
    """

    def __init__(self, max_queue: int, trim_after_bytes: int = TRIM_AFTER_BYTES):
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="thunder-worker")
        self._lock = threading.Lock()
        self._cancels: set[threading.Event] = set()  # one per job held
        self.max_queue = max_queue
        self.closing = threading.Event()
        self._trim_after = trim_after_bytes

    @property
    def held(self) -> int:
        return len(self._cancels)

    def submit(self, fn, cancel: threading.Event) -> concurrent.futures.Future:
        with self._lock:
            if self.closing.is_set():
                raise shutting_down()
            if len(self._cancels) >= self.max_queue:
                raise ApiError(
                    503, "busy", f"{len(self._cancels)} jobs already queued; retry later", headers={"Retry-After": "5"}
                )
            self._cancels.add(cancel)

        def job():
            try:
                if cancel.is_set():  # cancelled while queued: skip the work
                    raise Cancelled("cancelled while queued")
                return fn(cancel)
            finally:
                self._release(cancel)
                memory.give_back(self._trim_after)

        return self._pool.submit(job)

    def drop(self, future: concurrent.futures.Future, cancel: threading.Event) -> None:
        """Stop a job nobody waits for: unqueue it if the worker has not begun it (its place
        is free at once), else the engine stops at its next step."""
        cancel.set()
        if future.cancel():
            self._release(cancel)

    def _release(self, cancel: threading.Event) -> None:
        with self._lock:
            self._cancels.discard(cancel)

    def begin_shutdown(self) -> None:
        """The server is stopping: refuse new jobs; waiting requests answer `shutting_down`."""
        self.closing.set()

    def close(self) -> None:
        """Stop: cancel every held job (the running one stops at its next step)."""
        self.closing.set()
        with self._lock:
            for cancel in self._cancels:
                cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _retrieved(future) -> None:
    """Read a finished future's outcome so that nobody logs it as 'never retrieved'."""
    if not future.cancelled():
        future.exception()


class JobWatch:
    """A queued job as its request sees it: cancelled if the client leaves, time runs out
    or the server stops."""

    def __init__(self, worker: Worker, fn, timeout_s: float):
        self.cancel = threading.Event()
        self._worker = worker
        self._future = worker.submit(fn, self.cancel)  # `busy` is raised here, before any answer
        self._future.add_done_callback(_retrieved)
        self._waiter = asyncio.wrap_future(self._future)
        # The asyncio twin carries the same exception: a cancelled job nobody awaits any more
        # would otherwise be logged at ERROR when it is collected.
        self._waiter.add_done_callback(_retrieved)
        self._timeout_s = timeout_s
        self._deadline = asyncio.get_running_loop().time() + timeout_s

    async def tick(self, request: Request) -> bool:
        """Wait up to POLL_S: True once the job has ended. A gone client, a passed deadline
        or a stopping server cancels the job and raises the protocol's error."""
        done, _ = await asyncio.wait({self._waiter}, timeout=POLL_S)
        if done:
            return True
        if self._worker.closing.is_set():
            self.abandon()
            raise shutting_down()
        if await request.is_disconnected():
            self.abandon()
            raise ApiError(499, "cancelled", "client disconnected; job cancelled")
        if asyncio.get_running_loop().time() > self._deadline:
            self.abandon()
            raise ApiError(503, "timeout", f"request took longer than {self._timeout_s:g} s")
        return False

    def result(self):
        """The finished job's value, its failure raised as the protocol's error."""
        try:
            return self._waiter.result()
        except asyncio.CancelledError:  # dropped from the queue (drop): it never ran
            raise ApiError(499, "cancelled", "job cancelled before it started") from None
        except Exception as exc:
            err = protocol_error(exc)
            if err is None:
                raise
            raise err from None

    def abandon(self) -> None:
        """Nobody will read the result: drop the job unless it has already ended."""
        if not self._future.done():
            self._worker.drop(self._future, self.cancel)


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
    except Exception as exc:  # headers are sent: a bug can only be reported in the stream
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
    except ApiError as exc:  # disconnect or timeout: the job is cancelled already
        yield _error_line(exc)
        return
    yield _result_line(watch)


def wants_stream(request: Request, stream: bool) -> bool:
    return stream or NDJSON in request.headers.get("accept", "")
