"""`thunder batch FILE.blend…`: key every sound strip of every scene, headless.

Each file runs in its own Blender process (a Blender binary with `--blender`,
else the `bpy` module in this Python when installed, else `blender` on PATH), so
the backend never imports bpy and a crash costs one file. Inside, the add-on's
`headless.main` keys strips through the same code path as the Generate button,
saves after every strip and skips strips already keyed unless `--force`: rerun
after a crash and it resumes. Exits non-zero when any strip failed.

The Blender processes, and the backend that `--bundle` starts, die with this
one, so a rerun never races an orphan keying the same strip:
- SIGTERM, SIGINT and SIGHUP stop them (SIGTERM, then SIGKILL after a grace
  period) and exit with 128 + the signal's number;
- on Linux they also get SIGKILL from the kernel when this process dies by any
  means, SIGKILL included (prctl PR_SET_PDEATHSIG);
- elsewhere nothing kills them when this process is killed outright: on macOS
  a `kill -9` leaves them running (the Blender process to the end of its file,
  the backend until stopped by hand), on Windows so does TerminateProcess
  (`taskkill /F`, End task; a Job object would be needed). The handlers above
  still work there (Ctrl-C and Ctrl-Break on Windows), each child running in
  its own process group.
Each FILE.blend is also locked while it is keyed (FILE.blend.thunder-lock, an
advisory flock/msvcrt lock that the OS drops when its holders die, so a stale
lock file blocks nothing): a second `thunder batch` on the same file refuses it
(a failed row, exit code 1) and goes on with its other files. The Blender
process inherits the lock on POSIX, so even an orphan (macOS, above) holds it
until it is done.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from backend.contracts import PRESET_NAMES

CHECKOUT_ADDON = Path(__file__).resolve().parent.parent / "blender_thunder"
INSTALLED_ADDON = "bl_ext.user_default.thunder"
DEFAULT_URL = "http://127.0.0.1:8765"
LOCK_SUFFIX = ".thunder-lock"
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when stopping a child

log = logging.getLogger("thunder.batch")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "batch",
        help="key every sound strip of .blend files headless (through Blender)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE.blend")
    p.add_argument("--takes", type=int, default=4, help="takes per strip (default 4)")
    p.add_argument("--seed", type=int, default=0, help="first seed; take i uses seed + i")
    p.add_argument("--preset", default="default", choices=PRESET_NAMES)
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--blender", default=None, help="Blender binary (default: the bpy module, else `blender`)")
    p.add_argument("--force", action="store_true", help="re-key strips that already have takes")
    p.add_argument("--url", default=DEFAULT_URL, help="backend URL")
    p.add_argument("--token-file", default=None, help="default: $XDG_CONFIG_HOME/thunder/token")
    p.add_argument(
        "--bundle",
        default=None,
        help="start a backend with this bundle when none answers at --url (stopped at the end)",
    )
    p.add_argument(
        "--addon",
        default=None,
        help=f"add-on to run: a folder (default: this checkout's blender_thunder) or a module name "
        f"such as {INSTALLED_ADDON}",
    )
    p.add_argument(
        "--target",
        default=None,
        metavar="OBJECT",
        help="object to key in every scene holding it: a character's mesh with shape keys (or the rig); "
        "default: the panel's target, else the scene's THUNDER rig",
    )
    p.add_argument(
        "--mapping",
        default=None,
        metavar="PRESET_OR_JSON",
        help="the character's mapping: a preset (arkit52, vrm_visemes, thunder_exp) or a mapping JSON file; "
        "default: the mapping the character has (detected from its shape-key names when it has none)",
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per file")
    p.add_argument("--json", type=Path, default=None, help="also write the summary as JSON here")
    p.set_defaults(func=run)


# ---- the command run inside Blender ----


def _addon_import(addon: str | None) -> str:
    """Python that imports the add-on's `headless` module as `h`."""
    if addon is None and CHECKOUT_ADDON.is_dir():
        addon = str(CHECKOUT_ADDON)
    if addon is None:
        addon = INSTALLED_ADDON
    if os.path.isdir(addon):
        parent, name = os.path.split(os.path.abspath(addon).rstrip(os.sep))
        return (
            f"import sys, importlib; sys.path.insert(0, {parent!r}); "
            f"h = importlib.import_module({name + '.headless'!r})"
        )
    return (
        f"import addon_utils, importlib; addon_utils.enable({addon!r}, default_set=False); "
        f"h = importlib.import_module({addon + '.headless'!r})"
    )


def blender_command(blend: Path, config: dict, blender: str | None, addon: str | None) -> list[str]:
    body = f"{_addon_import(addon)}; h.main(json.loads({json.dumps(config)!r}))"
    if blender is None and importlib.util.find_spec("bpy") is not None:
        # The bpy module: open the file first, as `blender -b FILE` would.
        expr = f"import json, bpy; bpy.ops.wm.open_mainfile(filepath={str(blend)!r}); {body}"
        return [sys.executable, "-c", expr]
    exe = blender or shutil.which("blender")
    if exe is None:
        raise SystemExit("thunder batch: no Blender: pass --blender PATH or install the bpy module")
    return [exe, "-b", str(blend), "--python-exit-code", "2", "--python-expr", f"import json; {body}"]


# ---- child processes: they die with this one ----

# Signals that stop a batch cleanly. SIGHUP: the terminal closed. SIGBREAK: Ctrl-Break on Windows.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGBREAK") if hasattr(signal, name)
)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Stopped(BaseException):
    """A stop signal arrived. A BaseException, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _load_prctl():
    """libc's prctl, loaded here: the child between fork and exec must not load libraries."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError) as exc:
        log.warning("no prctl (%s): a `kill -9` of thunder batch will leave its children running", exc)
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return prctl


class Children:
    """The processes this batch started (the backend, one Blender at a time), stopped newest first
    on the way out whatever the way: a normal end, an exception, a stop signal. On Linux the kernel
    also kills them when this process dies, SIGKILL included (PR_SET_PDEATHSIG)."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        self._prctl = _load_prctl()

    def spawn(self, cmd: list[str], **kwargs) -> subprocess.Popen:
        # The child's stdin is never the terminal: in its own process group a read from it would stop it (SIGTTIN).
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        if os.name == "nt":
            # Own group, so a console Ctrl-C reaches only this process, which stops the child itself.
            # Nothing makes it die with a TerminateProcess'd parent (that needs a Job object).
            proc = subprocess.Popen(cmd, creationflags=subprocess.CREATE_NEW_PROCESS_GROUP, **kwargs)
            self.procs.append(proc)
            return proc
        # Stop signals wait until the child is on the list: a handler raising between fork and the
        # append would leave a child nobody stops.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            proc = subprocess.Popen(cmd, preexec_fn=self._child_setup(os.getpid()), **kwargs)
            self.procs.append(proc)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        log.info("started pid %d: %s", proc.pid, " ".join(cmd)[:200])
        return proc

    def _child_setup(self, parent: int):
        prctl = self._prctl

        def setup() -> None:  # in the child, between fork and exec
            # Its own process group: stopping it stops whatever it started too (killpg), and a
            # terminal's Ctrl-C goes to this process only, which stops the child in order.
            os.setpgid(0, 0)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # the mask survives exec
            if prctl is not None:
                # The kernel's SIGKILL when the thread that forked it (the main one) dies. SIGKILL, not
                # SIGTERM: the batch is gone uncleanly, nobody would escalate, and uvicorn's SIGTERM waits
                # for running requests.
                prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                if os.getppid() != parent:  # the parent died before prctl: no signal would ever come
                    os.kill(os.getpid(), signal.SIGKILL)

        return setup

    def stop(self, proc: subprocess.Popen, grace: float = STOP_GRACE) -> None:
        """SIGTERM to the child's group, SIGKILL after `grace` seconds; reaps it. A no-op once it has exited."""
        if proc in self.procs:
            self.procs.remove(proc)
        if proc.poll() is not None:
            return
        log.info("stopping pid %d", proc.pid)
        if os.name == "nt":
            proc.terminate()
        else:
            _killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
                return
            except subprocess.TimeoutExpired:
                _killpg(proc.pid, signal.SIGKILL)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            log.warning("pid %d did not exit after SIGKILL", proc.pid)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


def _killpg(pgid: int, sig: int) -> None:
    # Only called while the group's leader is unreaped, so the group id cannot have been reused.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


@contextlib.contextmanager
def stop_signals():
    """SIGTERM/SIGINT/SIGHUP raise Stopped once; a second signal during the cleanup is ignored so that the
    cleanup finishes (it is bounded: STOP_GRACE, then SIGKILL). Handlers need the main thread: elsewhere
    (thunder batch called in-process from a thread) the process's own handling applies."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum, _frame):
        if not fired:
            fired.append(signum)
            raise Stopped(signum)

    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# ---- one lock per .blend ----


class Locked(Exception):
    """Another thunder batch (or a Blender process it started) holds the file's lock."""


def lock_path(blend: Path) -> Path:
    return blend.with_name(blend.name + LOCK_SUFFIX)


if os.name == "nt":
    import msvcrt

    _WIN_LOCK_AT = 1 << 20  # the locked byte, past the holder's note (a locked range cannot be read)

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _WIN_LOCK_AT, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        # msvcrt wants a region unlocked before its file is closed (closing a locked one is undefined).
        with contextlib.suppress(OSError):
            os.lseek(fd, _WIN_LOCK_AT, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def _read_note(fd: int) -> str:
    with contextlib.suppress(OSError):
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 200).decode("utf-8", "replace").strip()
    return ""


def lock_blend(blend: Path) -> int:
    """Lock FILE.blend for keying: the lock file's descriptor, or Locked. An advisory lock the OS drops
    when every process holding the descriptor exits, so a lock file left by a killed batch is free;
    the file itself only says who holds it."""
    path = lock_path(blend)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _try_lock(fd):
                note = _read_note(fd)
                raise Locked(
                    f"locked by another thunder batch ({note or 'starting'}): skipped; rerun when it is done "
                    f"(the lock is {path.name}, freed when that batch and its Blender exit)"
                )
            # The last holder unlinks the file while still holding it (unlock_blend): if that happened
            # between our open and our lock, we hold an unlinked file nobody else sees. Take the live one.
            if os.name != "nt":
                try:
                    live = os.path.samestat(os.fstat(fd), os.stat(path))
                except FileNotFoundError:
                    live = False
                if not live:
                    os.close(fd)
                    continue
            note = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, note.encode())
            if os.name != "nt":
                os.ftruncate(fd, len(note.encode()))
            return fd
        except BaseException:
            os.close(fd)
            raise


def unlock_blend(blend: Path, fd: int) -> None:
    """Release after the Blender process that inherited the descriptor has exited. POSIX: the file goes
    too, unlinked while still locked (lock_blend retries on a file unlinked under it); on Windows an open
    file cannot be removed by another process's holder, so it stays, unlocked."""
    path = lock_path(blend)
    if os.name == "nt":
        _unlock(fd)
    else:
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                os.unlink(path)
    os.close(fd)  # POSIX: releases the flock


# ---- the backend ----


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/v1/health", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def ensure_backend(url: str, bundle: str | None, children: Children, timeout: float = 120.0):
    """None if a backend answers; else start one from `bundle` (one of `children`) and return its process."""
    if _healthy(url):
        return None
    if not bundle:
        raise SystemExit(f"thunder batch: no backend at {url}; start `thunder serve` or pass --bundle DIR")
    port = url.rsplit(":", 1)[-1].strip("/")
    # A file, not a pipe: nobody reads the server's log while it runs, and a full pipe would block it.
    log_file = tempfile.NamedTemporaryFile("w+", prefix="thunder-batch-backend-", suffix=".log", delete=False)
    proc = children.spawn(
        [sys.executable, "-m", "backend.cli", "serve", "--bundle", bundle, "--port", port, "--log-level", "warning"],
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout
    while not _healthy(url):
        if proc.poll() is not None:
            raise SystemExit(f"thunder batch: the backend exited: {Path(log_file.name).read_text()[-800:]}")
        if time.monotonic() > deadline:
            children.stop(proc)
            raise SystemExit(f"thunder batch: the backend did not answer within {timeout:.0f} s")
        time.sleep(0.3)
    print(
        f"thunder batch: started a backend at {url} (pid {proc.pid}, log {log_file.name})", file=sys.stderr, flush=True
    )
    return proc


# ---- one file, then all ----


def key_file(blend: Path, args, children: Children, lock_fd: int | None = None) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="thunder-batch-") as tmp:
        report = Path(tmp) / "report.json"
        config = {
            "takes": args.takes,
            "seed": args.seed,
            "preset": args.preset,
            "guidance": args.guidance,
            "force": args.force,
            "url": args.url,
            "token_file": args.token_file,
            "report": str(report),
            "timeout": args.timeout,
            "target": args.target,
            "mapping": args.mapping,
        }
        cmd = blender_command(blend, config, args.blender, args.addon)
        # POSIX: Blender inherits the file's lock, so an orphan that outlives this process (no
        # PDEATHSIG: macOS) still holds it and a rerun refuses the file instead of keying it twice.
        inherit = (lock_fd,) if lock_fd is not None and os.name != "nt" else ()
        proc = children.spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, pass_fds=inherit)
        try:
            stdout, stderr = proc.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return [_row(blend, "failed", f"timed out after {args.timeout:.0f} s")]
        finally:
            # Stopped (a signal) or a timeout: Blender goes before its temp folder and the lock do.
            children.stop(proc)
        if not report.exists():
            tail = (stderr or stdout or "").strip().splitlines()[-3:]
            return [_row(blend, "failed", f"Blender exited with code {proc.returncode}: {' | '.join(tail)}")]
        rows = json.loads(report.read_text())["rows"]
    return [{"file": str(blend), **r} for r in rows] or [_row(blend, "skipped", "no sound strips")]


def _mapping_arg(spec: str | None) -> str | None:
    """--mapping for Blender: a preset's name as is, a file's absolute path (Blender's working
    folder is not ours), checked here so a bad one stops the batch before any Blender starts."""
    from blender_thunder.core import retarget

    if not spec or spec in retarget.presets():
        return spec
    try:
        retarget.Mapping.load(spec)
    except ValueError as exc:
        raise SystemExit(
            f"thunder batch: --mapping {spec}: not a preset ({', '.join(retarget.presets())}) nor a mapping file: {exc}"
        ) from None
    return str(Path(spec).resolve())


def key_locked(blend: Path, args, children: Children) -> list[dict]:
    """key_file under the file's lock; a file another batch is keying is refused, not keyed twice."""
    try:
        fd = lock_blend(blend)
    except Locked as exc:
        print(f"thunder batch: {blend.name}: {exc}", file=sys.stderr, flush=True)
        return [_row(blend, "failed", str(exc))]
    except OSError as exc:
        return [_row(blend, "failed", f"cannot lock {lock_path(blend).name}: {exc}")]
    try:
        return key_file(blend, args, children, fd)
    finally:
        unlock_blend(blend, fd)


def _row(blend: Path, status: str, message: str) -> dict:
    return {
        "file": str(blend),
        "scene": "",
        "strip": "",
        "status": status,
        "takes": 0,
        "best_score": None,
        "seconds": 0.0,
        "message": message,
    }


def format_table(rows: list[dict]) -> str:
    head = ("file", "scene", "strip", "status", "takes", "best", "s", "message")
    lines = [
        [
            Path(r["file"]).name,
            r["scene"],
            r["strip"],
            r["status"],
            str(r["takes"]),
            "-" if r["best_score"] is None else f"{r['best_score']:.3f}",
            f"{r['seconds']:.1f}",
            r["message"][:70],
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    return "\n".join(
        [fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*line) for line in lines]
    )


def run(args) -> int:
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        raise SystemExit(f"thunder batch: no such file: {', '.join(missing)}")
    args.mapping = _mapping_arg(args.mapping)
    children = Children()
    rows: list[dict] = []
    done = 0
    with stop_signals():
        try:
            try:
                ensure_backend(args.url, args.bundle, children)
                for done, blend in enumerate(args.files):
                    print(f"[{done + 1}/{len(args.files)}] {blend}", file=sys.stderr, flush=True)
                    rows += key_locked(blend.resolve(), args, children)
                done = len(args.files)
            finally:
                children.stop_all()  # the backend it started; anything an exception left behind
        except Stopped as stop:  # from anywhere above, the finally's own wait included
            children.stop_all()  # the signal may have cut the finally short
            print(
                f"thunder batch: stopped by {signal.Signals(stop.signum).name} after {done} of "
                f"{len(args.files)} file(s); its Blender and backend are stopped. Every keyed strip is "
                f"saved: rerun to resume.",
                file=sys.stderr,
                flush=True,
            )
            return 128 + stop.signum
    print(format_table(rows))
    for r in rows:  # the table cuts messages short; failures are worth reading in full
        if r["status"] == "failed":
            print(f"failed: {Path(r['file']).name} {r['scene']} {r['strip']}: {r['message']}")
    failed = sum(r["status"] == "failed" for r in rows)
    keyed = sum(r["status"] == "keyed" for r in rows)
    print(f"\n{keyed} keyed, {sum(r['status'] == 'skipped' for r in rows)} skipped, {failed} failed")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "ok": failed == 0}, indent=1))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="thunder")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
