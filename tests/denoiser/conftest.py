import shutil
from pathlib import Path

import pytest

from tests.denoiser.tiny_corpus import make_tiny_corpus


@pytest.fixture(scope="session")
def head_dir(tmp_path_factory) -> Path:
    """The stand-in head, built by the real head builder (once per session)."""
    from training.cli import main
    out = tmp_path_factory.mktemp("head")
    assert main(["head", "build", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    return make_tiny_corpus(tmp_path_factory.mktemp("corpus"))
