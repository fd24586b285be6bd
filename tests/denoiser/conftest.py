from pathlib import Path

import pytest

from tests.tiny_corpus import loudness_corpus


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    return loudness_corpus(tmp_path_factory.mktemp("corpus"))


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
