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


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A tiny speech-encoder checkpoint in the format `load_encoder` reads (random weights)."""
    from dataclasses import asdict

    import torch

    from training.export import tiny_speech_encoder
    enc = tiny_speech_encoder()
    path = tmp_path_factory.mktemp("encoder") / "encoder.pt"
    torch.save({"config": asdict(enc.cfg), "model": enc.state_dict()}, path)
    return path
