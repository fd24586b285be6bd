"""Speech side: espeak-ng phone timing, phone inventory, sentence text."""

import numpy as np

from training.corpus.phones import INVENTORY, SIL
from training.corpus.sources import espeak_utterance, tidy
from training.corpus.speakers import espeak_speakers
from training.corpus.text import GRID, grid_sentence, utterance_text

SR = 16000


def _speaker(i=0):
    return espeak_speakers(4, np.random.default_rng(7))[i]


def test_phone_onset_matches_the_sound():
    """The first phone after the leading pause starts where the audio gets loud (exact event timing)."""
    for i, text in enumerate(["Sam saw six seals.", "Fish fry fast.", "Zoe sees a zebra."]):
        u = espeak_utterance(text, _speaker(i), np.random.default_rng(i))
        first = next(s for s, e, lab in u.phones if lab != SIL)
        env = np.abs(u.audio)
        loud = np.nonzero(env > 0.05 * env.max())[0][0] / SR
        assert abs(loud - first) < 0.03, (text, loud, first)


def test_phones_cover_the_audio_and_use_the_inventory():
    u = espeak_utterance("The quick brown fox jumps over the lazy dog.", _speaker(), np.random.default_rng(0))
    assert u.phones[0][0] == 0.0 and abs(u.phones[-1][1] - u.duration) < 1e-6
    assert all(abs(a[1] - b[0]) < 1e-9 for a, b in zip(u.phones, u.phones[1:]))
    assert {lab for _, _, lab in u.phones} <= set(INVENTORY)
    assert u.phones[0][2] == SIL and u.phones[-1][2] == SIL  # starts and ends at rest
    assert [w for _, _, w in u.words] == "The quick brown fox jumps over the lazy dog".split()
    assert all(s < e for s, e, _ in u.words)


def test_sentences_cover_the_phones():
    rng = np.random.default_rng(1)
    seen = set()
    sp = _speaker(1)
    for _ in range(60):
        seen |= {lab for _, _, lab in espeak_utterance(utterance_text(rng), sp, rng).phones}
    assert len(set(INVENTORY) - seen) <= 1, set(INVENTORY) - seen


def test_grid_grammar_and_determinism():
    words = grid_sentence(np.random.default_rng(3)).split()
    assert [w in GRID[slot] for w, slot in zip(words, GRID)] == [True] * 6
    a = [utterance_text(np.random.default_rng(5)) for _ in range(3)]
    assert a == [utterance_text(np.random.default_rng(5)) for _ in range(3)]


def test_speakers_are_distinct_combinations():
    sp = espeak_speakers(72, np.random.default_rng(0))
    assert len({s["voice"] for s in sp}) == 72
    assert len({s["id"] for s in sp}) == 72


def test_tidy_fills_gaps_and_merges_pauses():
    phones, _ = tidy([(0.1, 0.2, "AA"), (0.2, 0.3, SIL), (0.3, 0.4, SIL), (0.5, 0.6, "M")], 0.8)
    assert phones == [(0.0, 0.1, SIL), (0.1, 0.2, "AA"), (0.2, 0.5, SIL), (0.5, 0.6, "M"), (0.6, 0.8, SIL)]


def test_transcripts_of_the_real_sources():
    from training.corpus.recordings import asterisk_transcripts, english_text, fillets_character, fillets_transcripts

    doc = "; Core Asterisk Sounds\n\nactivated: Activated.\nbeep: [a beep]\ndigits/7: Seven.\nodd line\n"
    assert asterisk_transcripts(doc) == {"activated": "Activated.", "digits/7": "Seven."}
    lua = (
        'dialogId("let-m-divna", "font_small", "What kind of strange ship is that?")\n'
        'dialogStr("Co je to za divnou lo\u010f?")\n\n'
        'dialogId("let-v-vrak0", "font_big", "This is the \\"wreck\\".")\n'
    )
    assert fillets_transcripts(lua) == {
        "let-m-divna": "Co je to za divnou lo\u010f?",
        "let-v-vrak0": 'This is the "wreck".',
    }
    assert fillets_character("let-v-vrak0", "airplane") == "v"
    assert fillets_character("bot-x-smich", "aztec") == "aztec-x"
    assert english_text("Press 0 then * or # 42 times") == "Press zero then  star  or  pound  forty two times"


def test_foreign_phones_keep_lips_and_never_turn_speech_into_pauses():
    from training.corpus.phones import foreign_to_arpa

    assert foreign_to_arpa("y", "fr") == "UW" and foreign_to_arpa("y", "ru") == "IH"  # /y/ is rounded, Russian y is not
    assert (
        foreign_to_arpa("'W", "fr") == "UH" and foreign_to_arpa("m;", "ru") == "M" and foreign_to_arpa("b", "cs") == "B"
    )
    assert foreign_to_arpa("R^", "cs") == "ZH" and foreign_to_arpa("R", "it") == "R"
    assert foreign_to_arpa("_:", "es") == SIL and foreign_to_arpa("%%", "nl") == SIL
    assert foreign_to_arpa("qq", "nl") == "HH"  # an unknown letter: a neutral consonant, not a pause


def test_mbrola_is_detected_or_skipped_with_a_reason():
    from training.corpus.mbrola import available_voices

    voices, why = available_voices()
    assert voices or ("MBROLA" in why and "skipped" in why)


def test_mbrola_pho_timing():
    from training.corpus.mbrola import parse_pho

    pho = "; comment\n_ 50\nh 60 0 120\n@ 45 50 130\nl 70\n@U 180 20 110 80 95\n_ 100\n"
    phones = parse_pho(pho)
    assert [p[2] for p in phones] == [SIL, "HH", "AH", "L", "OW", SIL]
    assert np.allclose([p[1] for p in phones], np.cumsum([0.05, 0.06, 0.045, 0.07, 0.18, 0.1]))


def test_synthesis_dtw_alignment_finds_phones_in_other_speech():
    """align.synth_align warps espeak's exact phone times onto a recording: on a recording whose
    times are known (the same French text, another voice variant, slower and higher), the bilabial
    centres land within 40 ms (one motion frame) of the truth."""
    import soxr

    from training.corpus import espeak
    from training.corpus.align import synth_align
    from training.corpus.phones import foreign_to_arpa

    text = "Bonjour, mon ami. Le bateau part demain matin pour la belle ville de Paris."
    syn = espeak.synthesize(text, "fr+m3", rate=125, pitch=70)
    audio = soxr.resample(syn.audio, syn.sample_rate, 16000).astype(np.float32)
    truth = []
    for k, (smp, name) in enumerate(syn.phones):
        end = syn.phones[k + 1][0] if k + 1 < len(syn.phones) else len(syn.audio)
        if foreign_to_arpa(name, "fr") in ("M", "P", "B"):
            truth.append((smp + end) / 2 / syn.sample_rate)
    got = synth_align(audio, text, "fr")
    assert got is not None
    words, phones = got
    found = [(s + e) / 2 for s, e, lab in phones if lab in ("M", "P", "B")]
    assert len(found) == len(truth) >= 6
    assert np.max(np.abs(np.array(found) - np.array(truth))) < 0.04
    assert phones[0][0] == 0.0 and abs(phones[-1][1] - len(audio) / 16000) < 1e-6
    assert len(words) >= 12
