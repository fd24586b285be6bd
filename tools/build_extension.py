"""Build and validate the THUNDER extension zip: `dist/thunder-<version>.zip`.

    python tools/build_extension.py [--out dist] [--bundle DIR | --no-bundle]

Stages `blender_thunder/` plus what the zip needs to start the bundled backend
(`backend_runtime/backend/`: the backend's pure-Python package; and
`backend_runtime/models/<name>/`: a model bundle), then builds and validates it
with Blender's own extension tooling (`bl_pkg`, shipped inside the `bpy` module).
Not part of the shipped add-on.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "blender_thunder"
MANIFEST = ROOT / "blender_manifest.toml"      # top level, as the repository layout has it
BACKEND = ROOT / "backend"
DEFAULT_BUNDLE = BACKEND / "models" / "thunder-base"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.blend1", "models", "batch.py")


def extension_cli(args: list[str]) -> int:
    """Blender's `blender --command extension …`, run from the bpy module."""
    import bpy  # noqa: F401  (puts Blender's bundled add-ons, bl_pkg among them, on sys.path)
    from bl_pkg import bl_extension_cli
    return bl_extension_cli.cli_extension_handler(args)


def stage(dest: Path, bundle: Path | None) -> Path:
    shutil.copytree(SOURCE, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(MANIFEST, dest / "blender_manifest.toml")
    runtime = dest / "backend_runtime"
    shutil.copytree(BACKEND, runtime / "backend", ignore=IGNORE)
    if bundle is not None:
        if not (bundle / "manifest.json").is_file():
            raise SystemExit(f"build_extension: {bundle} is not a model bundle (no manifest.json)")
        shutil.copytree(bundle, runtime / "models" / bundle.name, ignore=shutil.ignore_patterns("*.log"))
    return dest


def build(out: Path, bundle: Path | None) -> Path:
    manifest = tomllib.loads(MANIFEST.read_text())
    out.mkdir(parents=True, exist_ok=True)
    zip_path = out.resolve() / f"{manifest['id']}-{manifest['version']}.zip"
    with tempfile.TemporaryDirectory(prefix="thunder-ext-") as tmp:
        src = stage(Path(tmp) / manifest["id"], bundle)
        if extension_cli(["validate", str(src)]) != 0:
            raise SystemExit("build_extension: the manifest or sources failed Blender's validation")
        if extension_cli(["build", "--source-dir", str(src), "--output-filepath", str(zip_path)]) != 0:
            raise SystemExit("build_extension: Blender's extension build failed")
    if extension_cli(["validate", str(zip_path)]) != 0:
        raise SystemExit(f"build_extension: {zip_path} failed Blender's validation")
    return zip_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--bundle", type=Path, default=None,
                   help=f"model bundle to ship (default: {DEFAULT_BUNDLE.relative_to(ROOT)} when present)")
    g.add_argument("--no-bundle", action="store_true", help="ship no model (users set one in Preferences)")
    args = p.parse_args(argv)
    bundle = None if args.no_bundle else (args.bundle or (DEFAULT_BUNDLE if DEFAULT_BUNDLE.is_dir() else None))
    if bundle is None and not args.no_bundle:
        print(f"build_extension: no bundle at {DEFAULT_BUNDLE}; the zip carries no model", file=sys.stderr)
    path = build(args.out, bundle)
    print(f"built {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
