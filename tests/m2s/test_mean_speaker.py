"""The bundle's default speaker (`speaker_mean`) comes from the M2S run's target cache
wherever that run kept it: recorded in its config, named by its command's --cache
(older runs), or the run's own cache folder."""

import json

import numpy as np
import pytest

from training.export import mean_speaker


def _cache(folder, seed):
    folder.mkdir(parents=True)
    speakers = np.random.default_rng(seed).normal(size=(5, 8)).astype(np.float32)
    np.savez(folder / "train.npz", speaker=speakers)
    mean = speakers.mean(0)
    return mean / np.linalg.norm(mean)


@pytest.mark.parametrize("how", ["config", "command", "default"])
def test_mean_speaker_follows_the_runs_cache(tmp_path, how):
    run = tmp_path / "m2s"
    run.mkdir()
    shared = tmp_path / "shared cache" / "m2s"
    prov = {"command": "thunder-train m2s train --out m2s", "config": {}}
    if how == "default":
        expected = _cache(run / "cache", 0)
    else:
        expected = _cache(shared, 1)
        if how == "config":
            prov["config"]["cache"] = str(shared)
        else:
            prov["command"] += f" --cache '{shared}' --steps 10"
    (run / "provenance.json").write_text(json.dumps(prov))
    got = mean_speaker(run)["speaker_mean"]
    assert got.dtype == np.float32 and np.allclose(got, expected, atol=1e-6)


def test_mean_speaker_is_absent_without_a_cache(tmp_path):
    (tmp_path / "provenance.json").write_text(json.dumps({"command": "x --cache " + str(tmp_path / "gone")}))
    assert mean_speaker(tmp_path) == {}
