"""Natural synthetic voices (flite, Pico): real synthesis, real alignment, phone times that
match the sound. flite comes from the user cache (fetched once, as the build does)."""

import logging

import numpy as np
import pytest
import scipy.signal

from training.corpus import natural
from training.corpus.cli import default_cache
from training.corpus.phones import INVENTORY, SIL, VOWELS

SR = 16000
BILABIAL_TEXT = "Big moms buy pop."


@pytest.fixture(scope="module")
def offered():
    notes: list = []
    return natural.natural_speakers(default_cache(), np.random.default_rng(3), notes), notes


@pytest.fixture(scope="module")
def speakers(offered):
    if not offered[0]:
        pytest.skip(f"no natural voice runs here: {offered[1]}")
    return offered[0]


def _voice(speakers, voice):
    found = [s for s in speakers if s["voice"] == voice]
    if not found:
        pytest.skip(f"{voice} does not run here")
    return found[0]


def _closure_depth(audio: np.ndarray, start: float, end: float) -> float:
    """Quietest 10 ms frame inside [start, end] over the clip's loud level, above 400 Hz
    (a voiced b keeps a low voice bar while the lips are shut)."""
    high = scipy.signal.sosfilt(scipy.signal.butter(4, 400, "highpass", fs=SR, output="sos"), audio)
    frames = high[: len(high) // 160 * 160].reshape(-1, 160)
    energy = np.sqrt((frames**2).mean(axis=1) + 1e-12)
    inside = energy[int(start * 100) : max(int(end * 100), int(start * 100) + 1)]
    return float(inside.min() / np.percentile(energy, 95))


def test_every_voice_is_offered_or_skipped_with_a_reason(offered):
    """flite's four voices and Pico's two: each a distinct speaker with prosody drawn in
    range, or named in a note that says why it is missing."""
    speakers, notes = offered
    voices = {s["voice"] for s in speakers}
    assert len({s["id"] for s in speakers}) == len(speakers)
    assert all(s["source"] == "natural" and "amplitude" in s["style"] for s in speakers)
    assert all(natural.RATE[0] <= s["rate"] <= natural.RATE[1] for s in speakers)
    assert all(natural.PITCH[0] <= s["pitch"] <= natural.PITCH[1] for s in speakers)
    for voice in set(natural.VOICES) - voices:
        assert any(f"natural voice {voice} skipped: " in n for n in notes), (voice, notes)


def test_phones_cover_the_audio_and_bilabials_close(speakers):
    """Per voice: phones tile [0, duration] in the inventory, the words are the text's, and
    every p, b and m of "big moms buy pop" lies inside its word, with the lips' closure (a
    near-silent frame) inside each p and b."""
    for k, sp in enumerate(speakers):
        u = natural.natural_utterance(BILABIAL_TEXT, sp, np.random.default_rng(k))
        assert u is not None, sp["voice"]
        assert u.audio.dtype == np.float32 and 0.3 < np.abs(u.audio).max() <= 0.9
        assert u.phones[0][0] == 0.0 and abs(u.phones[-1][1] - u.duration) < 1e-6
        assert all(abs(a[1] - b[0]) < 1e-9 for a, b in zip(u.phones, u.phones[1:]))
        assert {lab for _, _, lab in u.phones} <= set(INVENTORY)
        assert u.phones[0][2] == SIL and u.phones[-1][2] == SIL
        assert [w for _, _, w in u.words] == ["big", "moms", "buy", "pop"], sp["voice"]
        lips = [(s, e, lab) for s, e, lab in u.phones if lab in ("P", "B", "M")]
        assert [lab for *_, lab in lips] == ["B", "M", "M", "B", "P", "P"], (sp["voice"], lips)
        owner = [0, 1, 1, 2, 3, 3]  # the word each bilabial belongs to
        for (s, e, lab), w in zip(lips, owner):
            ws, we, _ = u.words[w]
            assert ws - 1e-6 <= s < e <= we + 1e-6, (sp["voice"], lab, s, e, u.words[w])
            if lab != "M":
                assert _closure_depth(u.audio, s, e) < 0.1, (sp["voice"], lab, s, e)
        assert u.stressed is None or len(u.stressed) == len(u.phones)


def test_flite_marks_lexical_stress(speakers):
    """flite's own stress: content words' vowels stressed, reduced syllables and 'the' not."""
    sp = _voice(speakers, "flite-slt")
    u = natural.natural_utterance("Maggie will move the purple boxes.", sp, np.random.default_rng(0))
    vowels = [(lab, st) for (_, _, lab), st in zip(u.phones, u.stressed) if lab in VOWELS]
    assert [lab for lab, st in vowels if st] == ["AE", "IH", "UW", "ER", "AA"], vowels
    assert [lab for lab, st in vowels if not st] == ["IY", "AH", "AH", "AH"], vowels
    assert not any(st for (_, _, lab), st in zip(u.phones, u.stressed) if lab not in VOWELS)


def test_flite_times_agree_with_the_aligner(speakers):
    """flite's own segment times against pocketsphinx on the same audio: phone starts within
    25 ms on average over two sentences (measured 8-18 ms; a track 30 ms late fails)."""
    from training.corpus.align import sphinx_align

    texts = ["Maggie will move the purple boxes to the window before lunch.", "Place blue at f nine again."]
    for sp in speakers:
        if not sp["voice"].startswith("flite"):
            continue
        diffs = []
        for text in texts:
            audio, phones, _, _ = natural.flite_speech(text, sp["root"], natural.VOICES[sp["voice"]]["name"])
            got = sphinx_align(audio, text)
            assert got is not None, (sp["voice"], text)
            ours = [s for s, _, lab in phones if lab != SIL]
            theirs = [s for s, _, lab in got[1] if lab != SIL]
            assert len(ours) == len(theirs), (sp["voice"], text)
            diffs += [abs(a - b) for a, b in zip(ours, theirs)]
        assert np.mean(diffs) < 0.025, (sp["voice"], np.mean(diffs))


def test_deterministic(speakers):
    again = natural.natural_speakers(default_cache(), np.random.default_rng(3))
    assert [(s["id"], s["rate"], s["pitch"], s["style"]) for s in again] == [
        (s["id"], s["rate"], s["pitch"], s["style"]) for s in speakers
    ]
    for sp in (speakers[0], speakers[-1]):
        a = natural.natural_utterance("Judy sees the yellow boat.", sp, np.random.default_rng(9))
        b = natural.natural_utterance("Judy sees the yellow boat.", sp, np.random.default_rng(9))
        assert np.array_equal(a.audio, b.audio) and a.phones == b.phones and a.words == b.words


def test_missing_voices_are_left_out_with_a_reason(speakers, tmp_path, monkeypatch, caplog):
    """A flite package apt cannot fetch and a Pico language that does not exist: both voices
    are skipped with a warning that says why, the rest still come back, and the draws of
    the voices that remain do not change."""
    _voice(speakers, "pico-en-US")
    voices = {
        "flite-slt": {"engine": "flite", "name": "slt"},
        "pico-xx-XX": {"engine": "pico", "name": "xx-XX"},
        "pico-en-US": {"engine": "pico", "name": "en-US"},
    }
    monkeypatch.setattr(natural, "VOICES", voices)
    full = natural.natural_speakers(default_cache(), np.random.default_rng(4))
    monkeypatch.setattr(natural, "FLITE_PACKAGES", ("thunder-no-such-package",))
    notes: list = []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="training.corpus.natural"):
        got = natural.natural_speakers(tmp_path, np.random.default_rng(4), notes)
    assert [s["voice"] for s in got] == ["pico-en-US"]
    assert got[0] == next(s for s in full if s["voice"] == "pico-en-US")
    assert any("flite-slt skipped" in n and "thunder-no-such-package" in n for n in notes), notes
    assert any("pico-xx-XX skipped" in n for n in notes), notes
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 2, caplog.text
