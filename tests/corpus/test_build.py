"""The build: --small time and contents, splits, determinism, resumption, the reader, the report."""

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from backend.contracts import SAMPLE_RATE
from training.corpus.build import build, corpus_config
from training.corpus.cli import default_cache
from training.corpus.dataset import load_corpus
from training.corpus.report import report

SMALL_BUDGET_S = 90  # the target is 60 s on 2 free cores; the CI machine is shared


def test_small_build_is_quick_and_complete(small_corpus):
    out, manifest, seconds = small_corpus
    print(f"--small build: {seconds:.1f} s")
    assert seconds < SMALL_BUDGET_S
    hours = sum(u["duration"] for u in manifest["utterances"]) / 3600
    assert 8 / 60 < hours < 14 / 60
    assert manifest["fps"] == 25 and manifest["sample_rate"] == SAMPLE_RATE
    for u in manifest["utterances"]:
        assert (out / u["wav"]).exists() and (out / u["motion"]).exists()
    assert (out / "build.json").exists()


def test_splits_are_speaker_disjoint_and_real_speakers_held_out(small_corpus):
    out, manifest, _ = small_corpus
    corpus = load_corpus(out)
    by_speaker = {}
    for u in corpus.utterances:
        by_speaker.setdefault(u["speaker"], set()).add(u["split"])
    synthetic = [s for s, sp in corpus.speakers.items() if sp["source"] != "real"]
    assert all(len(by_speaker[s]) == 1 for s in synthetic)
    shares = {k: sum(by_speaker[s] == {k} for s in synthetic) / len(synthetic) for k in ("train", "val", "test")}
    assert 0.6 <= shares["train"] <= 0.8 and 0.1 <= shares["val"] <= 0.2 and 0.1 <= shares["test"] <= 0.2
    real = [s for s, sp in corpus.speakers.items() if sp["source"] == "real"]
    if not real:
        pytest.skip("real speakers unavailable here (no apt download): see the build's message")
    # the held-out real speaker (Allison) only in test; the other real speakers train (and validate), never test
    assert by_speaker["asterisk-allison"] == {"test"}
    # ... articulating like the average speaker (the lip checks' yardstick), the others their own way
    from training.corpus.speakers import neutral_style

    assert corpus.speakers["asterisk-allison"]["style"] == neutral_style()
    assert all(corpus.speakers[s]["style"] != neutral_style() for s in real if s != "asterisk-allison")
    seen = [s for s in real if s != "asterisk-allison"]
    assert seen and all("test" not in by_speaker[s] and "train" in by_speaker[s] for s in seen)
    origins = {u.get("origin") for u in corpus.utterances if u["source"] == "real"}
    assert origins == {"asterisk-en", "asterisk-fr"}


def test_reader_gives_aligned_audio_and_motion(small_corpus):
    out, _, _ = small_corpus
    corpus = load_corpus(out)
    for u in corpus.split("val")[:5] + corpus.split("test")[:5]:
        audio = corpus.audio(u)
        m = corpus.motion(u)
        assert audio.dtype == np.float32 and abs(len(audio) / SAMPLE_RATE - u["duration"]) < 1e-3
        assert m["exp"].shape == (u["n_frames"], 50) and m["jaw"].shape == (u["n_frames"], 3)
        assert u["n_frames"] == int(np.floor(u["duration"] * 25 + 1e-9))
        assert corpus.params(u).shape == (u["n_frames"], 53)
        assert len(m["phones"]) == len(m["phones_start"]) == len(m["phones_end"]) > 0
        assert m["speaker"] == u["speaker"] and m["source"] == u["source"]


def test_report_passes_on_the_small_corpus(small_corpus, head_dir):
    out, _, _ = small_corpus
    res = report(str(out), str(head_dir), max_utts=120, n_draws=3)
    assert res["passed"], res["checks"]
    assert res["bilabial_n"] > 100 and res["pause_n"] > 10


def _digest(folder: Path) -> dict:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "build.json"
    }


def test_same_seed_same_bytes_and_resume(tmp_path, head_dir):
    cfg, _ = corpus_config(
        "full",
        out=str(tmp_path / "a"),
        head=str(head_dir),
        cache=default_cache(),
        workers=1,
        hours=1.2 / 60,
        espeak_speakers=3,
        real=False,
    )
    build(cfg)
    build(replace(cfg, out=str(tmp_path / "b"), workers=2))
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert a == b and len(a) > 10
    # an interrupted build resumes to the same bytes
    victims = sorted((tmp_path / "b" / "motion").glob("*.npz"))[::2]
    for p in victims:
        p.unlink()
    (tmp_path / "b" / "manifest.json").unlink()
    build(replace(cfg, out=str(tmp_path / "b")))
    assert _digest(tmp_path / "b") == a
    build(replace(cfg, out=str(tmp_path / "c"), seed=1))
    assert _digest(tmp_path / "c") != a
    with pytest.raises(ValueError, match="another --out"):
        build(replace(cfg, seed=1))  # never mix two seeds in one folder
