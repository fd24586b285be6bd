import time

import pytest

from training.corpus.build import build, small_config
from training.corpus.cli import default_cache


@pytest.fixture(scope="session")
def face(head_dir):
    from training.corpus.face import Face

    return Face.load(head_dir)


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory, head_dir):
    """`corpus build --small`, timed (the real speaker's download and alignment are cached
    across runs in the user cache, as for users)."""
    out = tmp_path_factory.mktemp("corpus-small")
    t0 = time.time()
    manifest = build(small_config(str(out), str(head_dir), default_cache()), command="test")
    return out, manifest, time.time() - t0
