"""Build and validate the THUNDER extension zips, one per platform:
`dist/thunder-<version>-<platform>.zip` (linux_x64, windows_x64, macos_arm64, macos_x64).

    python tools/build_extension.py [--out dist] [--bundle DIR | --no-bundle] [--platform P ...]

Stages `blender_thunder/` plus what the zip needs to start the bundled backend on
Blender's own Python: `backend_runtime/backend/` (the backend's pure-Python
package), `backend_runtime/models/<name>/` (a model bundle) and `wheels/` (the
backend's requirements for each platform, tools/extension_wheels.toml, fetched
once with `pip download` into build/wheels/). Blender's own extension tooling
(`bl_pkg`, shipped inside the `bpy` module) validates the sources, builds one
zip per platform (`--split-platforms`) and validates each zip. Not part of the
shipped add-on.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "blender_thunder"
MANIFEST = ROOT / "blender_manifest.toml"  # top level, as the repository layout has it
BACKEND = ROOT / "backend"
DEFAULT_BUNDLE = BACKEND / "models" / "thunder-base"
WHEELS_CONFIG = Path(__file__).resolve().parent / "extension_wheels.toml"
WHEEL_CACHE = ROOT / "build" / "wheels"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.blend1", "models")

log = logging.getLogger("build_extension")


def wheels_config() -> dict:
    return tomllib.loads(WHEELS_CONFIG.read_text())


def platform_names() -> list[str]:
    return list(wheels_config()["platforms"])


def requirements(platform: str, config: dict | None = None) -> list[str]:
    """The pinned requirements of one platform (its overrides applied)."""
    config = config or wheels_config()
    override = config["platforms"][platform].get("override", {})
    out = []
    for req in config["requirements"]:
        name = req.split("==")[0]
        out.append(f"{name}=={override[name]}" if name in override else req)
    return out


def fetch_wheels(platform: str, cache: Path = WHEEL_CACHE) -> list[Path]:
    """The platform's wheels, downloaded once into `cache/<platform>` (pip's own cache
    makes a re-download cheap; pip refuses anything that is not a binary for that platform)."""
    config = wheels_config()
    dest = cache / platform
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--no-deps",
        "--implementation",
        "cp",
        "--python-version",
        config["python"],
        "--abi",
        "cp" + config["python"].replace(".", ""),
        "--abi",
        "abi3",
        "--abi",
        "none",
        "-d",
        str(dest),
    ]
    for tag in config["platforms"][platform]["pip"]:
        cmd += ["--platform", tag]
    log.info("fetching %s wheels into %s", platform, dest)
    proc = subprocess.run(cmd + requirements(platform, config), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"build_extension: pip could not fetch the {platform} wheels:\n{proc.stderr[-2000:]}")
    wanted = {_dist_key(r.split("==")[0]): r.split("==")[1] for r in requirements(platform, config)}
    found = [
        w for w in sorted(dest.glob("*.whl")) if wanted.get(_dist_key(w.name.split("-")[0])) == w.name.split("-")[1]
    ]
    missing = set(wanted) - {_dist_key(w.name.split("-")[0]) for w in found}
    if missing:
        raise SystemExit(f"build_extension: no {platform} wheel for {', '.join(sorted(missing))}")
    return found


def _dist_key(name: str) -> str:
    """Distribution names as wheel files spell them (PEP 503 normalised, '-' -> '_')."""
    return name.lower().replace("-", "_").replace(".", "_")


def extension_cli(args: list[str]) -> int:
    """Blender's `blender --command extension …`, run from the bpy module."""
    import bpy  # noqa: F401  (puts Blender's bundled add-ons, bl_pkg among them, on sys.path)
    from bl_pkg import bl_extension_cli

    return bl_extension_cli.cli_extension_handler(args)


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def stage(dest: Path, bundle: Path | None, platforms: list[str], cache: Path = WHEEL_CACHE) -> Path:
    shutil.copytree(SOURCE, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    runtime = dest / "backend_runtime"
    shutil.copytree(BACKEND, runtime / "backend", ignore=IGNORE)
    if bundle is not None:
        if not (bundle / "manifest.json").is_file():
            raise SystemExit(f"build_extension: {bundle} is not a model bundle (no manifest.json)")
        shutil.copytree(bundle, runtime / "models" / bundle.name, ignore=shutil.ignore_patterns("*.log"))
    wheels: dict[str, Path] = {}
    for platform in platforms:
        for w in fetch_wheels(platform, cache):
            wheels.setdefault(w.name, w)  # pure-Python wheels serve every platform once
    (dest / "wheels").mkdir()
    for name, path in sorted(wheels.items()):
        shutil.copy(path, dest / "wheels" / name)
    # The repository's manifest plus what only the build knows: the wheels and platforms.
    text = MANIFEST.read_text().rstrip("\n")
    head, sep, tail = text.partition("\n[")  # top-level keys must come before the first table
    extra = f"platforms = {_toml_list(platforms)}\nwheels = {_toml_list([f'./wheels/{n}' for n in sorted(wheels)])}\n"
    (dest / "blender_manifest.toml").write_text(f"{head}\n{extra}{sep}{tail}\n")
    return dest


def build(
    out: Path, bundle: Path | None, platforms: list[str] | None = None, cache: Path = WHEEL_CACHE
) -> dict[str, Path]:
    """Build one validated zip per platform; returns {platform: zip path}."""
    platforms = platforms or platform_names()
    manifest = tomllib.loads(MANIFEST.read_text())
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="thunder-ext-") as tmp:
        src = stage(Path(tmp) / manifest["id"], bundle, platforms, cache)
        if extension_cli(["validate", str(src)]) != 0:
            raise SystemExit("build_extension: the manifest or sources failed Blender's validation")
        if extension_cli(["build", "--source-dir", str(src), "--output-dir", str(out), "--split-platforms"]) != 0:
            raise SystemExit("build_extension: Blender's extension build failed")
    zips = {}
    for platform in platforms:
        path = out / f"{manifest['id']}-{manifest['version']}-{platform.replace('-', '_')}.zip"
        if not path.is_file() or extension_cli(["validate", str(path)]) != 0:
            raise SystemExit(f"build_extension: {path} is missing or failed Blender's validation")
        zips[platform] = path
    return zips


def host_platform() -> str:
    """This machine's Blender platform name (tests build only the zip they can install)."""
    import platform

    system = {"Linux": "linux", "Windows": "windows", "Darwin": "macos"}[platform.system()]
    arch = {"x86_64": "x64", "AMD64": "x64", "arm64": "arm64", "aarch64": "arm64"}[platform.machine()]
    return f"{system}-{arch}"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist)")
    p.add_argument(
        "--platform",
        action="append",
        choices=platform_names(),
        default=None,
        help="build only this platform's zip (repeatable; default: every platform)",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help=f"model bundle to ship (default: {DEFAULT_BUNDLE.relative_to(ROOT)} when present)",
    )
    g.add_argument("--no-bundle", action="store_true", help="ship no model (users set one in Preferences)")
    args = p.parse_args(argv)
    bundle = None if args.no_bundle else (args.bundle or (DEFAULT_BUNDLE if DEFAULT_BUNDLE.is_dir() else None))
    if bundle is None and not args.no_bundle:
        log.warning("no bundle at %s; the zips carry no model", DEFAULT_BUNDLE)
    for platform, path in build(args.out, bundle, args.platform).items():
        log.info("built %s (%.1f MB) for %s", path, path.stat().st_size / 1e6, platform)
    return 0


if __name__ == "__main__":
    sys.exit(main())
