import importlib.util
from pathlib import Path

import pytest

from tests.denoiser.conftest import head_dir, tiny_corpus  # noqa: F401  (session fixtures)

HAS_M2S = importlib.util.find_spec("training.m2s.export") is not None


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, head_dir, tiny_corpus) -> Path:  # noqa: F811
    """A real tiny bundle: tiny speech encoder, GE2E speaker, tiny M2S (when it exists),
    a 2-layer denoiser after a few training steps on the tiny corpus."""
    from training.export import build_tiny_bundle
    out = tmp_path_factory.mktemp("bundle")
    build_tiny_bundle(out, head_dir, train_steps=5, corpus=tiny_corpus, m2s=HAS_M2S)
    return out
