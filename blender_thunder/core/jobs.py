"""Background work: a worker thread per job, a queue, and a timer that drains it.

Threads never touch bpy: they talk to the backend and decode. Everything they
produce goes through `_queue`; `drain()` runs on Blender's main thread (from the
timer `tick`, or called directly headless where no event loop runs) and only
there does a job's `apply` change the scene.

No bpy here: the Blender layer (handlers.py) hands in `set_waker` the function that
schedules `tick` on a `bpy.app.timers` timer, and adds the UI redraw with `listen`.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .client import BackendError, Cancel, Cancelled
from .messages import BadMessage

POLL_S = 0.1
_queue: "queue.Queue[tuple]" = queue.Queue()
_jobs: dict[int, "Job"] = {}
_ids = itertools.count(1)
_wake: Callable[[], None] | None = None  # schedules tick(): set by the add-on's register(); headless, None
_listeners: list[Callable[[], None]] = []  # called after each drain while jobs run (UI redraw)
log = logging.getLogger(__name__)


@dataclass
class Job:
    label: str
    work: Callable[["Job"], Any]  # worker thread: returns the result
    apply: Callable[[Any], str]  # main thread: changes the scene, returns a message
    id: int = field(default_factory=lambda: next(_ids))
    cancel: Cancel = field(default_factory=Cancel)
    state: str = "running"  # running | done | failed | cancelled
    message: str = ""
    progress: float = 0.0
    stage: str = "starting"
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    thread: threading.Thread | None = None

    def report(self, progress: float, stage: str) -> None:
        """Thread-safe: called from the worker."""
        _queue.put(("progress", self.id, float(progress), str(stage)))

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def running(self) -> bool:
        return self.state == "running"


def _run(job: Job) -> None:
    try:
        result = job.work(job)
    except Cancelled:
        _queue.put(("cancelled", job.id, None))
    except (BackendError, BadMessage, OSError, ValueError) as exc:
        if not job.cancel.is_set:
            log.warning("%s failed: %s", job.label, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        _queue.put(("cancelled" if job.cancel.is_set else "error", job.id, str(exc)))
    except Exception as exc:  # a bug: keep the traceback for the console
        log.exception("%s failed", job.label)
        _queue.put(("error", job.id, f"{type(exc).__name__}: {exc}"))
    else:
        _queue.put(("done", job.id, result))


def start(label: str, work: Callable[[Job], Any], apply: Callable[[Any], str]) -> Job:
    job = Job(label, work, apply)
    _jobs[job.id] = job
    job.thread = threading.Thread(target=_run, args=(job,), name=f"thunder-{job.id}", daemon=True)
    job.thread.start()
    if _wake is not None:
        _wake()
    return job


def cancel(job_id: int | None = None) -> int:
    """Cancel one job (or all running). The scene is left as it was."""
    n = 0
    for job in list(_jobs.values()):
        if job.running and (job_id is None or job.id == job_id):
            job.cancel.cancel()
            n += 1
    return n


def _finish(job: Job, state: str, message: str) -> None:
    job.state, job.message, job.finished = state, message, time.monotonic()
    job.progress = 1.0 if state == "done" else job.progress


def drain() -> bool:
    """Handle every queued message on the main thread. True while jobs run."""
    changed = False
    while True:
        try:
            kind, job_id, *payload = _queue.get_nowait()
        except queue.Empty:
            break
        job = _jobs.get(job_id)
        if job is None or not job.running:
            continue
        changed = True
        if kind == "progress":
            job.progress, job.stage = payload
        elif kind == "cancelled" or job.cancel.is_set:
            _finish(job, "cancelled", "cancelled: the scene was not changed")
        elif kind == "error":
            _finish(job, "failed", f"failed: {payload[0]} (the scene was not changed)")
        elif kind == "done":
            job.stage = "keying"
            try:
                _finish(job, "done", job.apply(payload[0]))
            except Exception as exc:  # apply rolls back its own changes before raising
                log.exception("%s: applying the result failed", job.label)
                _finish(job, "failed", f"failed: {exc} (the scene was not changed)")
    still = any(j.running for j in _jobs.values())
    if changed or still:  # while running, the elapsed time shown changes too
        for fn in list(_listeners):
            fn()
    return still


def wait(job: Job, timeout: float = 600.0) -> Job:
    """Drain until `job` ends: for headless use (no event loop runs the timer)."""
    deadline = time.monotonic() + timeout
    while True:
        drain()
        if not job.running:
            break
        if time.monotonic() > deadline:
            cancel(job.id)
            job.thread.join(10)
            drain()
            raise TimeoutError(f"{job.label}: no answer after {timeout:.0f} s")
        time.sleep(0.02)
    return job


def active() -> list[Job]:
    return [j for j in _jobs.values() if j.running]


def latest() -> Job | None:
    return max(_jobs.values(), key=lambda j: j.id, default=None)


def tick() -> float | None:
    """The timer's function: drain, and ask to be called again in POLL_S while jobs run."""
    still = drain()
    return POLL_S if still else None


def set_waker(wake: Callable[[], None] | None) -> None:
    """`wake()` runs after each start() to have tick() called from the main thread's event
    loop (the add-on's bpy timer); None: nobody does, callers drain() (headless)."""
    global _wake
    _wake = wake


def listen(fn: Callable[[], None]) -> None:
    """`fn()` after every drain that changed something or while jobs run (a UI redraw)."""
    if fn not in _listeners:
        _listeners.append(fn)


def unlisten(fn: Callable[[], None]) -> None:
    if fn in _listeners:
        _listeners.remove(fn)


def shutdown() -> None:
    """Unregister: cancel running jobs; no more waking."""
    cancel()
    set_waker(None)
