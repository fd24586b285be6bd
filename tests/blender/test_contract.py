"""The add-on's copy of the contract (blender_thunder/core/contract.py, which must not
import `backend`: tests/studio/test_layers.py) equals backend/contracts.py, name by name."""

from __future__ import annotations

from backend import contracts
from blender_thunder.core import contract


def test_every_name_of_the_copy_equals_the_backends():
    names = [n for n in vars(contract) if n.isupper()]
    assert len(names) >= 11
    for name in names:
        assert getattr(contract, name) == getattr(contracts, name), name


def test_head_id_is_the_backends():
    import numpy as np

    from backend.headfile import head_id

    rng = np.random.default_rng(0)
    v, f = rng.normal(size=(40, 3)), rng.integers(0, 40, size=(30, 3))
    assert contract.head_id(v, f) == head_id(v, f)
