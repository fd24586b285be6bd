"""`thunder batch FILE.blend…`: key every sound strip of every scene, headless.

Each file runs in its own Blender process (a Blender binary with `--blender`,
else the `bpy` module in this Python when installed, else `blender` on PATH), so
the backend never imports bpy and a crash costs one file. Inside, the add-on's
`headless.main` keys strips through the same code path as the Generate button,
saves after every strip and skips strips already keyed unless `--force`: rerun
after a crash and it resumes. Exits non-zero when any strip failed.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

CHECKOUT_ADDON = Path(__file__).resolve().parent.parent / "blender_thunder"
INSTALLED_ADDON = "bl_ext.user_default.thunder"
DEFAULT_URL = "http://127.0.0.1:8765"


def register(subparsers) -> None:
    p = subparsers.add_parser("batch", help="key every sound strip of .blend files headless (through Blender)",
                              description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path, metavar="FILE.blend")
    p.add_argument("--takes", type=int, default=4, help="takes per strip (default 4)")
    p.add_argument("--seed", type=int, default=0, help="first seed; take i uses seed + i")
    p.add_argument("--preset", default="default", choices=["draft", "default", "high"])
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--blender", default=None, help="Blender binary (default: the bpy module, else `blender`)")
    p.add_argument("--force", action="store_true", help="re-key strips that already have takes")
    p.add_argument("--url", default=DEFAULT_URL, help="backend URL")
    p.add_argument("--token-file", default=None, help="default: $XDG_CONFIG_HOME/thunder/token")
    p.add_argument("--bundle", default=None,
                   help="start a backend with this bundle when none answers at --url (stopped at the end)")
    p.add_argument("--addon", default=None,
                   help=f"add-on to run: a folder (default: this checkout's blender_thunder) or a module name "
                        f"such as {INSTALLED_ADDON}")
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
        return (f"import sys, importlib; sys.path.insert(0, {parent!r}); "
                f"h = importlib.import_module({name + '.headless'!r})")
    return (f"import addon_utils, importlib; addon_utils.enable({addon!r}, default_set=False); "
            f"h = importlib.import_module({addon + '.headless'!r})")


def blender_command(blend: Path, config: dict, blender: str | None, addon: str | None) -> list[str]:
    body = f"{_addon_import(addon)}; h.main(json.loads({json.dumps(config)!r}))"
    if blender is None and importlib.util.find_spec("bpy") is not None:
        # The bpy module: open the file first, as `blender -b FILE` would.
        expr = (f"import json, bpy; bpy.ops.wm.open_mainfile(filepath={str(blend)!r}); {body}")
        return [sys.executable, "-c", expr]
    exe = blender or shutil.which("blender")
    if exe is None:
        raise SystemExit("thunder batch: no Blender: pass --blender PATH or install the bpy module")
    return [exe, "-b", str(blend), "--python-exit-code", "2", "--python-expr", f"import json; {body}"]


# ---- the backend ----

def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/v1/health", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def ensure_backend(url: str, bundle: str | None, timeout: float = 120.0):
    """None if a backend answers; else start one from `bundle` and return its process."""
    if _healthy(url):
        return None
    if not bundle:
        raise SystemExit(f"thunder batch: no backend at {url}; start `thunder serve` or pass --bundle DIR")
    port = url.rsplit(":", 1)[-1].strip("/")
    # A file, not a pipe: nobody reads the server's log while it runs, and a full pipe would block it.
    log = tempfile.NamedTemporaryFile("w+", prefix="thunder-batch-backend-", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--bundle", bundle, "--port", port,
                             "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while not _healthy(url):
        if proc.poll() is not None:
            raise SystemExit(f"thunder batch: the backend exited: {Path(log.name).read_text()[-800:]}")
        if time.monotonic() > deadline:
            proc.terminate()
            raise SystemExit(f"thunder batch: the backend did not answer within {timeout:.0f} s")
        time.sleep(0.3)
    return proc


# ---- one file, then all ----

def key_file(blend: Path, args) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="thunder-batch-") as tmp:
        report = Path(tmp) / "report.json"
        config = {"takes": args.takes, "seed": args.seed, "preset": args.preset, "guidance": args.guidance,
                  "force": args.force, "url": args.url, "token_file": args.token_file, "report": str(report),
                  "timeout": args.timeout}
        cmd = blender_command(blend, config, args.blender, args.addon)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return [_row(blend, "failed", f"timed out after {args.timeout:.0f} s")]
        if not report.exists():
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
            return [_row(blend, "failed", f"Blender exited with code {proc.returncode}: {' | '.join(tail)}")]
        rows = json.loads(report.read_text())["rows"]
    return [{"file": str(blend), **r} for r in rows] or [_row(blend, "skipped", "no sound strips")]


def _row(blend: Path, status: str, message: str) -> dict:
    return {"file": str(blend), "scene": "", "strip": "", "status": status, "takes": 0, "best_score": None,
            "seconds": 0.0, "message": message}


def format_table(rows: list[dict]) -> str:
    head = ("file", "scene", "strip", "status", "takes", "best", "s", "message")
    lines = [[Path(r["file"]).name, r["scene"], r["strip"], r["status"], str(r["takes"]),
              "-" if r["best_score"] is None else f"{r['best_score']:.3f}", f"{r['seconds']:.1f}",
              r["message"][:70]] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*l) for l in lines])


def run(args) -> int:
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        raise SystemExit(f"thunder batch: no such file: {', '.join(missing)}")
    server = ensure_backend(args.url, args.bundle)
    rows: list[dict] = []
    try:
        for i, blend in enumerate(args.files, 1):
            print(f"[{i}/{len(args.files)}] {blend}", file=sys.stderr, flush=True)
            rows += key_file(blend.resolve(), args)
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
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
