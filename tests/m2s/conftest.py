import pytest

from tests.speech import pipeline


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    return pipeline.corpus(tmp_path_factory)


@pytest.fixture(scope="session")
def mouth_run(tmp_path_factory):
    return pipeline.m2s(tmp_path_factory, "mouth2s")


@pytest.fixture(scope="session")
def floor_run(tmp_path_factory):
    return pipeline.m2s(tmp_path_factory, "noface", steps=10)
