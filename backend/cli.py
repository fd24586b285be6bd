"""`thunder`: serve the backend, or animate / listen / bench without a server.

Sub-commands live in COMMANDS (name -> module with `register(subparsers)` that
sets `func`), as in `thunder-train`. Other packages add theirs as entry points
(backend/plugins.py): `thunder batch` comes from `studio.batch`, which drives
Blender, and is there when `studio` is installed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

from backend import plugins
from backend.settings import DEFAULTS

COMMANDS = {
    "serve": "backend.cli",
    "animate": "backend.cli",
    "listen": "backend.cli",
    "bench": "backend.bench",
    "loadtest": "backend.loadtest",
    "soak": "backend.soak",
}
PLUGINS = "thunder.commands"  # entry points: name -> register(subparsers) of another package


def add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bundle", default=None, help="model bundle folder (default: $THUNDER_BUNDLE or backend/models/thunder-base)"
    )
    p.add_argument("--device", default=DEFAULTS.device, choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="onnxruntime intra-op threads (default: one per core; 1 can be faster on a busy machine)",
    )
    p.add_argument(
        "--lanes",
        type=int,
        default=None,
        help="sessions that split each sampler step's takes between them (default: 2 on a CPU with two "
        "or more threads, each with half of them; 0: one session)",
    )


def open_engine(args):
    """The engine or a clean exit with the reason (same loader as the server)."""
    from backend.service import load_engine

    engine, error = load_engine(args.bundle, args.device, getattr(args, "threads", None), getattr(args, "lanes", None))
    if engine is None:
        raise SystemExit(f"thunder: {error}")
    return engine


# ---- serve ----


def cmd_serve(args) -> int:
    from backend import security

    try:
        security.check_bind(args.host, args.allow_remote)
        token = security.load_or_create_token()
    except security.SecurityError as exc:
        raise SystemExit(f"thunder serve: {exc}") from None
    from backend import transport
    from backend.service import create_app
    from backend.settings import Settings

    settings = Settings(
        bundle=args.bundle,
        device=args.device,
        threads=args.threads,
        lanes=args.lanes,
        allow_remote=args.allow_remote,
        extra_hosts=tuple(args.allowed_host),
        allowed_origins=tuple(args.allowed_origin),
        max_upload_mb=args.max_upload_mb,
        max_seconds=args.max_seconds,
        max_queue=args.max_queue,
        timeout_s=args.timeout,
        max_cost=args.max_cost,
        header_timeout_s=args.header_timeout,
        idle_timeout_s=args.idle_timeout,
        require_model=args.require_model,
    )
    app = create_app(settings, token=token)
    if app.state.engine is None and settings.require_model:
        # For a supervisor: a server that cannot do its work should not look alive.
        raise SystemExit(f"thunder serve: --require-model: {app.state.service.load_error}")
    health = "model: " + (app.state.engine.manifest.get("name", "?") if app.state.engine else "none (no_model)")
    # Which backend code and which Python run: the add-on's launcher and its tests read this line.
    print(
        f"thunder serve on http://{args.host}:{args.port}  {health}  token: {security.token_path()}  "
        f"code: {Path(__file__).resolve().parent}  python: {sys.executable}",
        file=sys.stderr,
        flush=True,
    )
    # On SIGTERM, waiting requests answer 503 shutting_down at once; any still open after 3 s
    # are cancelled (and answered the same way if nothing was sent yet).
    transport.server(app, settings, args.host, args.port, args.log_level, graceful_s=3).run()
    return 0


def register_serve(sub) -> None:
    p = sub.add_parser("serve", help="run the HTTP backend (docs/protocol.md)")
    add_engine_args(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback bind and IP-literal Host headers (token still required)",
    )
    p.add_argument(
        "--allowed-host", action="append", default=[], metavar="NAME", help="extra Host name to accept (repeatable)"
    )
    p.add_argument("--max-upload-mb", type=float, default=DEFAULTS.max_upload_mb)
    p.add_argument("--max-seconds", type=float, default=DEFAULTS.max_seconds, help="longest audio per request")
    p.add_argument("--max-queue", type=int, default=DEFAULTS.max_queue, help="jobs held before 503 busy")
    p.add_argument("--timeout", type=float, default=DEFAULTS.timeout_s, help="seconds per request, queue wait included")
    p.add_argument(
        "--max-cost",
        type=float,
        default=DEFAULTS.max_cost,
        help="denoiser frame-passes per request (frames × takes × steps walked × 2 with guidance); 0: no limit",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=DEFAULTS.header_timeout_s,
        help="seconds a client has to send a request's headers",
    )
    p.add_argument(
        "--idle-timeout", type=float, default=DEFAULTS.idle_timeout_s, help="seconds a request body may go silent"
    )
    p.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="browser origin (scheme://host:port) allowed to call the API (repeatable); "
        "by default every request with an Origin header is refused",
    )
    p.add_argument(
        "--require-model",
        action="store_true",
        help="exit non-zero when the bundle cannot be loaded (default: serve and answer no_model)",
    )
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=cmd_serve)


# ---- animate ----


def cmd_animate(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from backend import jobs, jsonio
    from backend.audio import AudioError

    out_path = Path(args.out)
    if out_path.suffix not in (".npz", ".json"):
        raise SystemExit("thunder animate: --out must end in .npz or .json")
    opts = jobs.AnimateOptions(
        takes=args.takes,
        seed=args.seed,
        preset=args.preset,
        sampler=args.sampler,
        steps=args.steps,
        guidance=args.guidance,
        start=args.start,
        end=args.end,
        rank=args.rank,
        encoding=args.encoding,
    )
    try:
        opts.check()
    except jobs.OptionError as exc:
        raise SystemExit(f"thunder animate: {exc}") from None
    engine = open_engine(args)
    with tqdm(total=100, unit="%", desc="animate", disable=args.quiet) as bar:

        def progress(fraction: float):
            bar.update(max(0, int(round(100 * fraction)) - bar.n))

        try:
            out = jobs.animate(engine, args.input, opts, max_seconds=args.max_seconds, progress=progress)
        except (AudioError, jobs.OptionError) as exc:
            raise SystemExit(f"thunder animate: {exc}") from None
        bar.update(100 - bar.n)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if out_path.suffix == ".npz":
        np.savez(out_path, **jobs.to_npz_dict(out))
    else:
        out_path.write_text(jsonio.dumps(jobs.to_payload(out, opts.encoding), compact=True))
    scores = ", ".join(f"{t.seed}:{t.score:.3f}" for t in out.takes)
    print(
        f"{len(out.takes)} takes × {out.n_frames} frames ({out.duration:.2f} s) → {out_path}  "
        f"[{out.sampler} {out.steps} steps, {out.timings['total']:.2f} s]  seed:score {scores}"
    )
    return 0


def register_animate(sub) -> None:
    p = sub.add_parser("animate", help="speech file → takes (.npz or .json), no server needed")
    p.add_argument("input", help="WAV, FLAC, OGG or MP3")
    add_engine_args(p)
    p.add_argument("--out", required=True, help="OUT.npz or OUT.json (the /v1/animate response)")
    p.add_argument("--takes", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="default")
    p.add_argument("--sampler", default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--start", type=float, default=None)
    p.add_argument("--end", type=float, default=None)
    p.add_argument("--rank", action="store_true", help="sort takes by lip-sync score, best first")
    p.add_argument("--encoding", default="json", choices=["json", "b64"])
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_animate)


# ---- listen ----


def load_take(path: Path, index: int):
    """exp (T,50), jaw (T,3) of take `index` from an animate .npz or .json."""
    import numpy as np

    from backend import jobs

    if path.suffix == ".npz":
        with np.load(path) as z:
            if not 0 <= index < len(z["exp"]):
                raise SystemExit(f"thunder listen: take {index} not in {path} ({len(z['exp'])} takes)")
            return z["exp"][index], z["jaw"][index]
    payload = json.loads(path.read_text())
    takes = payload.get("takes", [payload])
    if not 0 <= index < len(takes):
        raise SystemExit(f"thunder listen: take {index} not in {path} ({len(takes)} takes)")
    try:
        return jobs.parse_take({**takes[index], "n_frames": payload.get("n_frames")}, max_frames=10**7)
    except jobs.OptionError as exc:
        raise SystemExit(f"thunder listen: {exc}") from None


def cmd_listen(args) -> int:
    from backend import jobs
    from backend.bundle import BundleError

    exp, jaw = load_take(Path(args.input), args.take)
    engine = open_engine(args)
    try:
        wav = jobs.listen(engine, exp, jaw)
    except BundleError as exc:
        raise SystemExit(f"thunder listen: {exc}") from None
    Path(args.out).write_bytes(wav)
    print(f"take {args.take}: {len(exp)} frames → {args.out}")
    return 0


def register_listen(sub) -> None:
    p = sub.add_parser("listen", help="a take → M2S → Griffin-Lim WAV: hear what the face says")
    p.add_argument("input", help="an animate output (.npz or .json)")
    add_engine_args(p)
    p.add_argument("--take", type=int, default=0)
    p.add_argument("--out", required=True, help="OUT.wav")
    p.set_defaults(func=cmd_listen)


def register(sub) -> None:
    register_serve(sub)
    register_animate(sub)
    register_listen(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thunder", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module_name in dict.fromkeys(COMMANDS.values()):
        importlib.import_module(module_name).register(sub)
    for register in plugins.load(PLUGINS).values():
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
