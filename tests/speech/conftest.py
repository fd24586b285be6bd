import numpy as np
import pytest
import soxr

from tests.speech import pipeline
from training.corpus.espeak import synthesize


@pytest.fixture(scope="session")
def speech():
    """A few seconds of real (espeak-ng) speech at 16 kHz."""
    syn = synthesize("The quick brown fox jumps over the lazy dog near the river bank.", voice="en-us+m3")
    return soxr.resample(syn.audio, syn.sample_rate, 16000).astype(np.float32)


@pytest.fixture(scope="session")
def other_speech():
    syn = synthesize("Maggie ate a big purple plum at the village fair.", voice="en-us+f2", pitch=70)
    return soxr.resample(syn.audio, syn.sample_rate, 16000).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    return pipeline.corpus(tmp_path_factory)


@pytest.fixture(scope="session")
def encoder_run(tmp_path_factory):
    return pipeline.encoder(tmp_path_factory)


@pytest.fixture(scope="session")
def units_dir(tmp_path_factory):
    return pipeline.units(tmp_path_factory)
