"""Importers: DiffPoseTalk/TFHP clips and a plain WAV + npz folder, written here in those layouts."""

import numpy as np
import pytest
import soundfile as sf

from training.corpus.dataset import load_corpus
from training.corpus.importers import import_corpus


def _clip(rng, seconds, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 180 * t) * rng.uniform(0.5, 1)).astype(np.float32)


def test_tfhp_layout(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "TFHP"
    truth = {}
    for spk in ["s01", "s02", "s03", "s04"]:
        (src / spk).mkdir(parents=True)
        for k in range(2):
            T = 50 + 10 * k
            exp, pose = rng.normal(size=(T, 50)), rng.normal(0, 0.1, size=(T, 6))
            np.savez(src / spk / f"clip{k}.npz", shape=rng.normal(size=100), exp=exp, pose=pose)
            sf.write(src / spk / f"clip{k}.wav", _clip(rng, T / 25), 16000)
            truth[f"{spk}-clip{k}"] = (exp, pose[:, 3:])
    import_corpus(src, tmp_path / "out")
    corpus = load_corpus(tmp_path / "out")
    assert len(corpus.utterances) == 8
    for uid, (exp, jaw) in truth.items():
        m = corpus.motion(uid)
        np.testing.assert_allclose(m["exp"], exp[: len(m["exp"])], atol=1e-6)
        np.testing.assert_allclose(m["jaw"], jaw[: len(m["jaw"])], atol=1e-6)
        assert len(m["exp"]) == corpus.get(uid)["n_frames"] >= len(exp) - 1
    splits = {}
    for u in corpus.utterances:
        splits.setdefault(u["speaker"], set()).add(u["split"])
    assert all(len(s) == 1 for s in splits.values())  # speaker-disjoint


def test_folder_layout_resamples_audio_and_motion(tmp_path):
    rng = np.random.default_rng(1)
    src = tmp_path / "mine" / "alice"
    src.mkdir(parents=True)
    for k in range(3):
        exp, jaw = rng.normal(size=(60, 100)), rng.normal(0, 0.1, size=(60, 3))  # 2 s at 30 fps
        np.savez(src / f"take{k}.npz", exp=exp, jaw=jaw, fps=30, text="hello there")
        sf.write(src / f"take{k}.wav", _clip(rng, 2.0, sr=44100), 44100)
    import_corpus(tmp_path / "mine", tmp_path / "out")
    corpus = load_corpus(tmp_path / "out")
    u = corpus.utterances[0]
    m = corpus.motion(u)
    assert m["exp"].shape == (50, 50) and m["jaw"].shape == (50, 3)  # 2 s at 25 fps, 50 coefficients
    assert abs(len(corpus.audio(u)) - 32000) <= 1 and m["text"] == "hello there"
    assert {x["split"] for x in corpus.utterances} == {"train", "val", "test"}  # one speaker: split by clip


def test_bad_input_says_what_is_wrong(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(FileNotFoundError, match="matching"):
        import_corpus(tmp_path / "x", tmp_path / "out")
    np.savez(tmp_path / "x" / "a.npz", foo=np.zeros(3))
    sf.write(tmp_path / "x" / "a.wav", np.zeros(1600, np.float32), 16000)
    with pytest.raises(ValueError, match="layout"):
        import_corpus(tmp_path / "x", tmp_path / "out")


def test_report_on_an_imported_corpus(tmp_path, head_dir):
    """Phone-based checks are not applicable to imports; range and split checks still run."""
    from training.corpus.report import report

    rng = np.random.default_rng(2)
    for spk in ["a", "b", "c"]:
        (tmp_path / "src" / spk).mkdir(parents=True)
        T = 40
        np.savez(tmp_path / "src" / spk / "x.npz", exp=rng.normal(0, 0.3, (T, 50)), jaw=np.full((T, 3), 0.05))
        sf.write(tmp_path / "src" / spk / "x.wav", _clip(rng, T / 25), 16000)
    import_corpus(tmp_path / "src", tmp_path / "out")
    res = report(str(tmp_path / "out"), str(head_dir))
    assert res["checks"]["bilabial closure"] is None and res["checks"]["motion in range"] is True
    assert res["passed"]
