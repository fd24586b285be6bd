"""The demo's lip-gap picture stands on real phone times: espeak-ng re-speaks the bundled
sentence sample for sample, and the corpus engine's articulation of it closes the lips."""

import numpy as np
import soundfile as sf

from backend import lipcheck
from studio.demo import DEMO_WAV
from studio.take_figures import demo_speech, lip_gap_plot, pseudo_gt


def test_demo_speech_is_the_bundled_recording():
    from training.corpus.espeak import synthesize

    synthesize("Something else first, in another voice.", "en-us+f3", 190)  # the engine's state must not matter
    wav, sr = sf.read(DEMO_WAV, dtype="float32")
    speech = demo_speech()
    again = speech.audio / np.abs(speech.audio).max() * 0.9  # assets/speech/README.md's recipe
    assert sr == 16000 and len(again) == len(wav)
    assert np.abs(again - wav).max() <= 2 / 32768  # PCM16 rounding only
    assert sum(lab in lipcheck.BILABIAL for _, _, lab in speech.phones) == 1  # the b of "Blender"


def test_pseudo_gt_closes_every_bilabial_and_plots(tmp_path, head_dir):
    from blender_thunder.core.lipseal import lip_gap_mm

    speech = demo_speech()
    exp, jaw = pseudo_gt(head_dir, speech)
    head = dict(np.load(head_dir / "head.npz"))
    gap = lip_gap_mm(exp, jaw, head)
    share, n = lipcheck.closure(gap, speech.phones)
    assert n == 1 and share == 1.0 and np.median(lipcheck.vowel_frames(gap, speech.phones)) > 5.0
    out = lip_gap_plot({"pseudo-GT": gap, "flat": np.full_like(gap, 8.0)}, tmp_path / "gap.png", speech.phones)
    assert out.stat().st_size > 10_000
