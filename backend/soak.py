"""`thunder soak`: a bounded soak and fault test of a real `thunder serve` process, loopback only.

It starts `thunder serve` as a child process (its own token folder, a free port) and
runs, in order:

1. warm-up: one small animate and one small listen; the resident memory after them is
   the server's idle figure;
2. concurrent clients: `clients` threads send `requests` requests between them, a mix
   of plain and streamed animate, listen, clients that leave mid-request, and bad audio;
3. the longest listen the server allows (`--max-seconds` × 25 frames), sent as the
   add-on sends it (base64);
4. a large animate (`big_seconds` of speech × `big_takes` takes, default preset);
5. 70 connections that never finish their headers, and a normal request beside them;
6. SIGTERM while one request runs and another waits.

Peak resident memory is the server's VmHWM (reset before each phase through
/proc/PID/clear_refs), resident memory the VmRSS a second after a phase. Every answer is
classified: `ok`, `STATUS:code` for the protocol's JSON errors, `plain:STATUS` for an
error that is not the protocol's JSON, `left` for a client that hung up on purpose.
The report (`reports/soak-<bundle>-<date>.{json,md}`) is stamped with machine, load
average, date and commit, and checks the bars of the backend's robustness issue.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from backend import bench, memory
from backend.bench import REPORTS, commit, machine, speech_clip
from backend.contracts import FPS
from backend.loadtest import percentiles

log = logging.getLogger("thunder.soak")

MB = 2**20
BARS = {"listen_peak_mb": 1536, "listen_wall_s": 60.0, "rss_over_idle_mb": 300}
PLAIN = "plain"


# ---- the server under test ----


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`thunder serve` in a child process, with what the soak reads of it."""

    def __init__(self, bundle, args=(), workdir: Path | None = None, ready_s: float = 180.0):
        self.bundle, self.args, self.ready_s = str(bundle), [str(a) for a in args], ready_s
        self._tmp = tempfile.TemporaryDirectory(prefix="thunder-soak-") if workdir is None else None
        self.workdir = Path(workdir or self._tmp.name)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def __enter__(self) -> "Server":
        env = {**os.environ, "XDG_CONFIG_HOME": str(self.workdir / "config")}
        self._err = open(self.workdir / "server.log", "w+")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "backend.cli",
                "serve",
                "--bundle",
                self.bundle,
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                *self.args,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
        )
        try:
            self._wait_ready()
        except BaseException:  # never leave a server behind that nobody will stop
            self.__exit__(None, None, None)
            raise
        self.token = (self.workdir / "config" / "thunder" / "token").read_text().strip()
        return self

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + self.ready_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"thunder serve exited with {self.proc.returncode}: {self.log()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                r = httpx.get(self.url + "/v1/ready", timeout=2)
                if r.status_code == 200:
                    break
                if r.json()["error"]["code"] == "no_model":
                    raise RuntimeError(f"thunder serve has no model: {r.json()['error']['message']}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"thunder serve not ready after {self.ready_s:g} s: {self.log()[-2000:]}")
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._err.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def wait_held(self, jobs: int, timeout: float = 30.0) -> None:
        """Until the server holds `jobs` jobs (running + queued, /v1/health's `queue`): a fault
        injected by the clock alone misses its moment on a loaded machine."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                if httpx.get(self.url + "/v1/health", timeout=2).json()["queue"] >= jobs:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the server did not hold {jobs} job(s) within {timeout:g} s")

    def log(self) -> str:
        self._err.flush()
        return (self.workdir / "server.log").read_text(errors="replace")

    def rss_mb(self) -> float:
        return memory.rss_bytes(self.proc.pid) / MB

    def reset_peak(self) -> bool:
        """Start a new peak (Linux: writing 5 to clear_refs resets VmHWM to the current RSS)."""
        try:
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def peak_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def settled_rss_mb(self, seconds: float = 1.0) -> float:
        time.sleep(seconds)
        return self.rss_mb()


# ---- requests and their outcomes ----


class Tally:
    """Outcomes by kind of request, latencies of the successful ones; thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self.outcomes: dict[str, dict[str, int]] = {}
        self.latency: dict[str, list[float]] = {}

    def add(self, kind: str, outcome: str, seconds: float) -> str:
        with self._lock:
            by = self.outcomes.setdefault(kind, {})
            by[outcome] = by.get(outcome, 0) + 1
            if outcome == "ok":
                self.latency.setdefault(kind, []).append(seconds)
        return outcome

    def summary(self) -> dict:
        everything = [x for v in self.latency.values() for x in v]
        return {
            "outcomes": self.outcomes,
            "latency_s": {k: percentiles(v) for k, v in self.latency.items()},
            "latency_all_s": percentiles(everything),
        }


def outcome(status: int, content_type: str, body: bytes) -> str:
    if status == 200:
        return "ok"
    try:
        return (
            f"{status}:{json.loads(body)['error']['code']}"
            if content_type.startswith("application/json")
            else f"{PLAIN}:{status}"
        )
    except (ValueError, KeyError, TypeError):
        return f"{PLAIN}:{status}"


def stream_outcome(lines: list[bytes]) -> str:
    """A streamed animate: ok when the last line is the result, the error's code otherwise."""
    try:
        last = json.loads(lines[-1])
    except (IndexError, ValueError):
        return "stream:cut"
    if last.get("event") == "result":
        return "ok"
    return f"{last.get('status')}:{last.get('code')}"


def b64(a) -> str:
    return base64.b64encode(np.ascontiguousarray(a, "<f4").tobytes()).decode()


def take_body(n_frames: int, seed: int = 0) -> dict:
    """A take as the add-on sends it to /v1/listen: a talking face's range of values, base64."""
    rng = np.random.default_rng(seed)
    exp = rng.normal(0, 0.5, (n_frames, 50)).astype(np.float32)
    jaw = np.zeros((n_frames, 3), np.float32)
    jaw[:, 0] = np.clip(0.1 * np.sin(np.arange(n_frames) / 3.0), 0, None)  # rest frames included
    return {"n_frames": n_frames, "exp_b64": b64(exp), "jaw_b64": b64(jaw)}


class Client:
    """One thread's connection to the server (httpx, as the add-on's own client behaves)."""

    def __init__(self, server: Server, tally: Tally):
        import httpx

        self.httpx, self.tally = httpx, tally
        self.http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"})

    def close(self) -> None:
        self.http.close()

    def animate(self, kind: str, wav: bytes, form: dict, timeout: float = 600, stream: bool = False) -> str:
        t0 = time.perf_counter()
        files = {"audio": ("clip.wav", wav)}
        data = {k: str(v) for k, v in form.items()}
        try:
            if stream:
                with self.http.stream(
                    "POST", "/v1/animate", files=files, data={**data, "stream": "true"}, timeout=timeout
                ) as r:
                    if r.status_code != 200:
                        r.read()
                        got = outcome(r.status_code, r.headers.get("content-type", ""), r.content)
                    else:
                        got = stream_outcome([line.encode() for line in r.iter_lines() if line.strip()])
            else:
                r = self.http.post("/v1/animate", files=files, data=data, timeout=timeout)
                got = outcome(r.status_code, r.headers.get("content-type", ""), r.content)
        except self.httpx.TimeoutException:
            got = "left"
        except self.httpx.HTTPError as exc:
            got = f"transport:{type(exc).__name__}"
        return self.tally.add(kind, got, time.perf_counter() - t0)

    def listen(self, kind: str, body: dict, timeout: float = 600) -> tuple[str, bytes]:
        t0 = time.perf_counter()
        content = b""
        try:
            r = self.http.post("/v1/listen", json=body, timeout=timeout)
            got, content = outcome(r.status_code, r.headers.get("content-type", ""), r.content), r.content
        except self.httpx.TimeoutException:
            got = "left"
        except self.httpx.HTTPError as exc:
            got = f"transport:{type(exc).__name__}"
        return self.tally.add(kind, got, time.perf_counter() - t0), content


# ---- phases ----


def _bad_audio() -> bytes:
    return b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40


def concurrent_phase(server: Server, tally: Tally, clients: int, requests: int, wav: bytes, progress) -> dict:
    """`requests` requests from `clients` threads; a sixth of them leave mid-request."""
    small = take_body(250, seed=1)
    form = {"takes": 2, "preset": "draft", "encoding": "b64"}
    kinds = ["animate", "animate_stream", "listen", "animate_left", "listen_left", "bad_audio"]
    counter, lock = iter(range(requests)), threading.Lock()
    done = [0]

    def worker():
        client = Client(server, tally)
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                kind = kinds[i % len(kinds)]
                if kind == "animate":
                    client.animate(kind, wav, {**form, "seed": i})
                elif kind == "animate_stream":
                    client.animate(kind, wav, {**form, "seed": i}, stream=True)
                elif kind == "listen":
                    client.listen(kind, small)
                elif kind == "animate_left":
                    client.animate(kind, wav, {**form, "takes": 8, "seed": i}, timeout=0.3)
                elif kind == "listen_left":
                    client.listen(kind, small, timeout=0.1)
                else:
                    client.animate(kind, _bad_audio(), form)
                with lock:
                    done[0] += 1
                    progress(f"concurrent {done[0]}/{requests}")
        finally:
            client.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, name=f"soak-{k}") for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"clients": clients, "requests": requests, "wall_s": round(time.perf_counter() - t0, 2)}


def big_phase(server: Server, tally: Tally, kind: str, run) -> dict:
    """One large request alone: wall time, the server's peak and settled resident memory."""
    server.reset_peak()
    t0 = time.perf_counter()
    got, extra = run()
    wall = time.perf_counter() - t0
    return {
        "outcome": got,
        "wall_s": round(wall, 2),
        "peak_mb": round(server.peak_mb(), 1),
        "rss_after_mb": round(server.settled_rss_mb(), 1),
        **extra,
    }


def idle_connections_phase(server: Server, tally: Tally, wav: bytes, count: int = 70) -> dict:
    """`count` connections that send half a request line and stop; a normal request beside them."""
    socks = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            socks.append(s)
        client = Client(server, tally)
        try:
            got = client.animate("beside_idle_connections", wav, {"takes": 1, "preset": "draft", "encoding": "b64"})
        finally:
            client.close()
    finally:
        for s in socks:
            s.close()
    return {"idle_connections": count, "outcome": got}


def sigterm_phase(server: Server, tally: Tally, wav: bytes) -> dict:
    """SIGTERM while a long request runs and a second waits: both must get JSON 503 shutting_down."""
    results: dict[str, str] = {}
    long = {"takes": 8, "sampler": "ddpm", "encoding": "b64"}

    def go(name, stream):
        client = Client(server, tally)
        try:
            results[name] = client.animate(f"sigterm_{name}", wav, long, timeout=120, stream=stream)
        finally:
            client.close()

    first = threading.Thread(target=go, args=("running", False))
    first.start()
    server.wait_held(1)
    time.sleep(0.5)  # past decoding: the first job is running on the worker
    second = threading.Thread(target=go, args=("queued", True))
    second.start()
    server.wait_held(2)
    t0 = time.perf_counter()
    server.proc.send_signal(signal.SIGTERM)
    first.join(60)
    second.join(60)
    answered = time.perf_counter() - t0
    try:
        code = server.proc.wait(30)
    except subprocess.TimeoutExpired:
        code = None
    text = server.log()
    return {
        "outcomes": results,
        "answered_within_s": round(answered, 2),
        "exit_code": code,
        "exited_within_s": round(time.perf_counter() - t0, 2),
        "log_tracebacks": text.count("Traceback"),
        "log_errors": sum(
            1 for line in text.splitlines() if line.startswith("ERROR") or " ERROR " in line or "ERROR:" in line
        ),
    }


# ---- the whole run ----


def run(
    bundle,
    *,
    clients: int = 8,
    requests: int = 48,
    listen_frames: int | None = None,
    big_seconds: float = 60.0,
    big_takes: int = 32,
    max_seconds: float = 600.0,
    clip_seconds: float = 3.0,
    progress=None,
) -> dict:
    progress = progress or (lambda text: None)
    listen_frames = int(listen_frames or max_seconds * FPS)
    tally = Tally()
    wav = _wav(speech_clip(clip_seconds))
    report = {
        "bundle": Path(bundle).name,
        "bundle_path": str(bundle),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": machine(),
        "settings": {
            "clients": clients,
            "requests": requests,
            "listen_frames": listen_frames,
            "big_seconds": big_seconds,
            "big_takes": big_takes,
            "max_seconds": max_seconds,
        },
    }
    args = ["--max-seconds", max_seconds, "--max-queue", 2 * clients + 2]
    with Server(bundle, args) as server:
        report["start_rss_mb"] = round(server.rss_mb(), 1)
        progress("warm-up")
        warm = Client(server, tally)
        try:
            warm.animate("warmup", wav, {"takes": 1, "preset": "draft", "encoding": "b64"})
            warm.listen("warmup", take_body(50))
        finally:
            warm.close()
        report["idle_rss_mb"] = round(server.settled_rss_mb(), 1)
        report["concurrent"] = concurrent_phase(server, tally, clients, requests, wav, progress)
        report["after_concurrent_rss_mb"] = round(server.settled_rss_mb(), 1)
        progress(f"listen {listen_frames} frames")
        body = take_body(listen_frames, seed=2)

        def listen():
            client = Client(server, tally)
            try:
                got, wav_out = client.listen("listen_max", body)
            finally:
                client.close()
            return got, {"frames": listen_frames, "wav_seconds": round((len(wav_out) - 44) / 32000, 2)}

        report["listen_max"] = big_phase(server, tally, "listen_max", listen)
        body = None  # the take bytes are no longer needed
        progress(f"animate {big_seconds:g} s × {big_takes} takes")
        big_wav = _wav(speech_clip(big_seconds))

        def animate():
            client = Client(server, tally)
            try:
                got = client.animate(
                    "animate_big", big_wav, {"takes": big_takes, "preset": "default", "encoding": "b64"}
                )
            finally:
                client.close()
            return got, {"seconds": big_seconds, "takes": big_takes}

        report["animate_big"] = big_phase(server, tally, "animate_big", animate)
        progress("idle connections")
        report["idle_connections"] = idle_connections_phase(server, tally, wav)
        progress("SIGTERM")
        report["sigterm"] = sigterm_phase(server, tally, wav)
    report.update(tally.summary())
    report["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    report["bars"] = bars(report)
    return report


def _wav(audio) -> bytes:
    from backend.audio import encode_wav

    return encode_wav(audio)


def bars(report: dict) -> dict:
    """The issue's bars, each with its measured figure and whether it was met."""
    unexpected_5xx = {
        f"{kind} {o}": n
        for kind, by in report["outcomes"].items()
        for o, n in by.items()
        if o[:1] == "5" and not (kind.startswith("sigterm") and o == "503:shutting_down")
    }
    plain = {
        f"{kind} {o}": n
        for kind, by in report["outcomes"].items()
        for o, n in by.items()
        if o.startswith(PLAIN) or o.startswith("transport") or o == "stream:cut"
    }
    largest = max(report["listen_max"]["rss_after_mb"], report["animate_big"]["rss_after_mb"])
    sig = report["sigterm"]
    return {
        "listen_max_peak_mb": {
            "value": report["listen_max"]["peak_mb"],
            "bar": BARS["listen_peak_mb"],
            "met": report["listen_max"]["peak_mb"] <= BARS["listen_peak_mb"],
        },
        "listen_max_wall_s": {
            "value": report["listen_max"]["wall_s"],
            "bar": BARS["listen_wall_s"],
            "met": report["listen_max"]["wall_s"] <= BARS["listen_wall_s"],
        },
        "rss_over_idle_after_largest_mb": {
            "value": round(largest - report["idle_rss_mb"], 1),
            "bar": BARS["rss_over_idle_mb"],
            "met": largest - report["idle_rss_mb"] <= BARS["rss_over_idle_mb"],
        },
        "unexpected_5xx": {"value": unexpected_5xx, "met": not unexpected_5xx},
        "plain_text_or_broken_answers": {"value": plain, "met": not plain},
        "sigterm_json_503": {
            "value": sig["outcomes"],
            "met": set(sig["outcomes"].values()) == {"503:shutting_down"} and len(sig["outcomes"]) == 2,
        },
        "sigterm_clean_log": {
            "value": {"tracebacks": sig["log_tracebacks"], "errors": sig["log_errors"]},
            "met": sig["log_tracebacks"] == 0 and sig["log_errors"] == 0,
        },
        "big_requests_ok": {
            "value": [report["listen_max"]["outcome"], report["animate_big"]["outcome"]],
            "met": report["listen_max"]["outcome"] == "ok" == report["animate_big"]["outcome"],
        },
    }


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        *bench.heading(report, "soak", f"load average {m['load_average']} before, {m['load_average_after']} after"),
        "| bar | measured | limit | met |",
        "|---|---|---|---|",
    ]
    for name, bar in report["bars"].items():
        lines.append(
            f"| {name} | {json.dumps(bar['value'], ensure_ascii=False)} | {bar.get('bar', '')} | "
            f"{'yes' if bar['met'] else '**no**'} |"
        )
    lines += [
        "",
        "| phase | wall s | peak RSS MB | RSS after MB | outcome |",
        "|---|---|---|---|---|",
        f"| start | | | {report['start_rss_mb']} | |",
        f"| idle (after warm-up) | | | {report['idle_rss_mb']} | |",
        f"| concurrent ({report['concurrent']['clients']} clients, {report['concurrent']['requests']} "
        f"requests) | {report['concurrent']['wall_s']} | | {report['after_concurrent_rss_mb']} | see below |",
    ]
    for key, label in (
        ("listen_max", f"listen {report['listen_max']['frames']} frames"),
        ("animate_big", f"animate {report['animate_big']['seconds']:g} s × {report['animate_big']['takes']} takes"),
    ):
        p = report[key]
        lines.append(f"| {label} | {p['wall_s']} | {p['peak_mb']} | {p['rss_after_mb']} | {p['outcome']} |")
    lines += [
        f"| 70 idle connections + 1 request | | | | {report['idle_connections']['outcome']} |",
        f"| SIGTERM (1 running, 1 queued) | {report['sigterm']['answered_within_s']} | | | "
        f"{report['sigterm']['outcomes']}, exit {report['sigterm']['exit_code']} |",
        "",
        "| request kind | outcomes | latency p50 / p90 / p99 s |",
        "|---|---|---|",
    ]
    for kind, by in report["outcomes"].items():
        lat = report["latency_s"].get(kind, {})
        figures = " / ".join(f"{lat[q]:.3f}" for q in ("p50", "p90", "p99")) if lat else ""
        lines.append(f"| {kind} | {json.dumps(by)} | {figures} |")
    return "\n".join(lines) + "\n"


def write(report: dict, out_dir: Path = REPORTS) -> tuple[Path, Path]:
    return bench.write(report, out_dir, kind="soak", render=markdown)


def cmd_soak(args) -> int:
    from backend.bundle import default_bundle

    bundle = Path(args.bundle) if args.bundle else default_bundle()
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would bury the phases

    def progress(text: str) -> None:
        log.info("soak: %s", text)

    report = run(
        bundle,
        clients=args.clients,
        requests=args.requests,
        listen_frames=args.listen_frames,
        big_seconds=args.big_seconds,
        big_takes=args.big_takes,
        max_seconds=args.max_seconds,
        progress=progress,
    )
    jpath, mpath = write(report, Path(args.out_dir))
    print(mpath.read_text())
    print(f"wrote {jpath} and {mpath}")
    return 0 if all(bar["met"] for bar in report["bars"].values()) else 1


def register(sub) -> None:
    p = sub.add_parser(
        "soak", help="bounded soak and fault test of a thunder serve process it starts; writes reports/soak-*.{json,md}"
    )
    p.add_argument("--bundle", default=None, help="default: $THUNDER_BUNDLE or backend/models/thunder-base")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=48)
    p.add_argument("--max-seconds", type=float, default=600.0, help="the server's --max-seconds")
    p.add_argument("--listen-frames", type=int, default=None, help="default: --max-seconds × 25 (the longest)")
    p.add_argument("--big-seconds", type=float, default=60.0)
    p.add_argument("--big-takes", type=int, default=32)
    p.add_argument("--out-dir", default=str(REPORTS))
    p.set_defaults(func=cmd_soak)
