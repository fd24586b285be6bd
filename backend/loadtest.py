"""`thunder loadtest`: a bounded load test of a running backend, loopback only.

Sends `requests` POST /v1/animate calls from `concurrency` client threads and
reports requests served, errors by code, and latency percentiles. It refuses
non-loopback URLs: it is a tool for checking your own server, not anyone's.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from backend import security

MAX_REQUESTS = 1000
MAX_CONCURRENCY = 64


def speech_wav(seconds: float) -> bytes:
    """The bench's speech-like clip as 16 kHz WAV bytes."""
    from backend.audio import encode_wav
    from backend.bench import speech_clip

    return encode_wav(speech_clip(seconds))


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    a = np.asarray(values)
    return {f"p{q}": round(float(np.percentile(a, q)), 4) for q in (50, 90, 99)} | {
        "max": round(float(a.max()), 4),
        "mean": round(float(a.mean()), 4),
    }


def run(
    url: str,
    token: str,
    audio: bytes,
    *,
    requests: int = 16,
    concurrency: int = 4,
    form: dict | None = None,
    timeout: float = 600.0,
) -> dict:
    """Fire the requests; return the report (requests, ok, errors, latency, throughput)."""
    import httpx

    host = urlsplit(url).hostname or ""
    if not security.is_loopback(host):
        raise ValueError(f"loadtest targets loopback servers only, not {host!r}")
    if not 1 <= requests <= MAX_REQUESTS or not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"requests must be 1..{MAX_REQUESTS} and concurrency 1..{MAX_CONCURRENCY}")
    form = {k: str(v) for k, v in (form or {}).items()}
    latencies, errors, lock = [], {}, threading.Lock()
    local = threading.local()

    def one(i: int):
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(
                base_url=url, timeout=timeout, headers={"Authorization": f"Bearer {token}"}
            )
        t0 = time.perf_counter()
        try:
            r = client.post("/v1/animate", data={**form, "seed": str(i)}, files={"audio": ("load.wav", audio)})
            code = "ok" if r.status_code == 200 else _error_code(r)
        except httpx.HTTPError as exc:
            code = f"transport:{type(exc).__name__}"
        dt = time.perf_counter() - t0
        with lock:
            if code == "ok":
                latencies.append(dt)
            else:
                errors[code] = errors.get(code, 0) + 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency, thread_name_prefix="loadtest") as pool:
        list(pool.map(one, range(requests)))
    wall = time.perf_counter() - t0
    return {
        "url": url,
        "requests": requests,
        "concurrency": concurrency,
        "ok": len(latencies),
        "errors": errors,
        "latency_s": percentiles(latencies),
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(latencies) / wall, 3),
        "form": form,
    }


def _error_code(r) -> str:
    try:
        return f"{r.status_code}:{r.json()['error']['code']}"
    except Exception:
        return str(r.status_code)


def cmd_loadtest(args) -> int:
    audio = Path(args.audio).read_bytes() if args.audio else speech_wav(args.seconds)
    token = args.token or security.load_or_create_token()
    form = {"takes": args.takes, "preset": args.preset, "encoding": "b64"}
    try:
        report = run(args.url, token, audio, requests=args.requests, concurrency=args.concurrency, form=form)
    except ValueError as exc:
        raise SystemExit(f"thunder loadtest: {exc}") from None
    lat = report["latency_s"]
    print(
        f"{report['ok']}/{report['requests']} ok, errors {report['errors'] or 'none'}, "
        f"latency p50 {lat.get('p50', float('nan')):.3f} s p90 {lat.get('p90', float('nan')):.3f} s "
        f"p99 {lat.get('p99', float('nan')):.3f} s, {report['throughput_rps']:.2f} req/s"
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0 if not report["errors"] else 1


def register(sub) -> None:
    p = sub.add_parser("loadtest", help="bounded load test of a running loopback backend")
    p.add_argument("--url", default="http://127.0.0.1:8765")
    p.add_argument("--token", default=None, help="default: the user's token file")
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--audio", default=None, help="audio file to send (default: a generated speech-like clip)")
    p.add_argument("--seconds", type=float, default=3.0, help="length of the generated clip")
    p.add_argument("--takes", type=int, default=2)
    p.add_argument("--preset", default="draft")
    p.add_argument("--out", default=None, help="write the JSON report here")
    p.set_defaults(func=cmd_loadtest)
