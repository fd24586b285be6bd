import pytest

from training.head.build import write_head_folder


@pytest.fixture(scope="session")
def head_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("head")
    write_head_folder(d)
    return d
