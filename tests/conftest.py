"""Fixtures every test area shares, built once per session: the stand-in head and a
real tiny model bundle. Each area's conftest adds only what is its own."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    """Areas whose tests start Blender or train models are slow as a whole: mark them, so
    `pytest -m "not slow"` is the quick loop (make test still runs everything)."""
    slow_areas = {"blender", "demo", "studio"}
    for item in items:
        if Path(str(item.fspath)).relative_to(ROOT / "tests").parts[0] in slow_areas:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def head_dir(tmp_path_factory) -> Path:
    """The stand-in head folder (`thunder-train head build`): deterministic, so any bundle
    built on the stand-in head matches it."""
    from training.head.build import write_head_folder

    out = tmp_path_factory.mktemp("head")
    write_head_folder(out)
    return out


@pytest.fixture(scope="session")
def head_npz(head_dir) -> Path:
    return head_dir / "head.npz"


def _sources_key() -> str:
    """Hash of everything a tiny bundle is built from: a change anywhere rebuilds it."""
    h = hashlib.sha256()
    for path in sorted(
        [*ROOT.glob("training/**/*.py"), *ROOT.glob("training/configs/*.json"), *ROOT.glob("backend/*.py")]
    ):
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def tiny_bundle(request) -> Path:
    """A real tiny bundle (training.export.build_tiny_bundle: the shipped architectures at a
    tiny size, random weights, every graph), built once and kept in pytest's cache keyed on
    the sources, so a re-run with unchanged code skips the ONNX export (a fresh checkout,
    as in CI, always builds). THUNDER_TEST_BUNDLE=DIR runs the tests against another bundle
    built on the stand-in head (e.g. the shipped one)."""
    if os.environ.get("THUNDER_TEST_BUNDLE"):
        return Path(os.environ["THUNDER_TEST_BUNDLE"])
    from training.export import build_tiny_bundle
    from training.head.build import write_head_folder

    root = Path(request.config.cache.mkdir("tiny-bundle"))
    bundle = root / _sources_key()
    if (bundle / "manifest.json").is_file():
        return bundle
    for old in root.iterdir():
        shutil.rmtree(old, ignore_errors=True)
    work = root / "building"
    write_head_folder(work / "head")
    build_tiny_bundle(work / "bundle", work / "head")
    (work / "bundle").rename(bundle)
    shutil.rmtree(work, ignore_errors=True)
    return bundle
