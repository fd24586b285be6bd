"""Session fixtures shared by every test area: one stand-in head, one tiny real bundle.

Building them once per session (instead of once per area) saves several minutes
of ONNX export in CI. Areas that need a differently made bundle (tests/engine
trains a few steps first) keep their own fixture.
"""
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def head_dir(tmp_path_factory) -> Path:
    """The stand-in head folder, as `thunder-train head build` writes it."""
    from training.head.build import write_head_folder

    out = tmp_path_factory.mktemp("head")
    write_head_folder(out)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, head_dir) -> Path:
    """A real (random-weight) bundle on the stand-in head: training.export.build_tiny_bundle.

    THUNDER_TEST_BUNDLE=DIR runs the same tests against another bundle built on the
    stand-in head (e.g. the shipped one)."""
    if os.environ.get("THUNDER_TEST_BUNDLE"):
        return Path(os.environ["THUNDER_TEST_BUNDLE"])
    from training.export import build_tiny_bundle

    out = tmp_path_factory.mktemp("bundle") / "thunder-tiny"
    build_tiny_bundle(out, head_dir)
    return out
