"""Classic pipeline peer: phones recognised from the audio, driven through the corpus articulation.

What Rhubarb-style tools do: a phone recogniser (pocketsphinx in allphone mode,
with the English acoustic model and phonetic language model shipped inside the
pocketsphinx wheel) turns speech into a phone sequence with times, and a
hand-made articulation model turns the phones into mouth motion. Here the
articulation is the corpus engine's own (training/corpus/articulation.py and
face.py) with a neutral speaker style, so the peer differs from the corpus
ground truth only by what it hears: recognised phones instead of the
synthesiser's / aligner's phones, and no upper face (mouth only, like those tools).

Phones are (start_s, end_s, label) tuples, as everywhere in the corpus engine;
labels are the corpus inventory (training/corpus/phones.py), pauses and noise
are 'sil'. Deterministic: the same audio gives the same phones and motion.
"""

from __future__ import annotations

import os

import numpy as np

from training.corpus.articulation import articulate
from training.corpus.face import Face, controls_to_flame
from training.corpus.phones import SIL, cmu_to_arpa
from training.corpus.speakers import neutral_style

SAMPLE_RATE = 16000
FRAME_RATE = 100  # pocketsphinx frames per second
# the average speaker (no upper face is drawn here: only the lip and jaw keys matter)
NEUTRAL_STYLE = neutral_style()
# Phone-loop decoding: wider beams than word decoding and a low language weight, so the
# acoustics lead (picked on 40 utterances of corpus-default's val split: frame phone-class
# agreement 0.63 vs 0.53 with pocketsphinx's defaults, which leave some utterances nearly all
# silence); whole-utterance cepstral mean normalisation, no dither (deterministic).
DECODER_SETTINGS = {"beam": 1e-40, "pbeam": 1e-40, "lw": 1.0, "cmn": "batch", "dither": False}


def _decoder():
    """A fresh decoder for every utterance: pocketsphinx carries state from one utterance to the
    next (the model's Gaussian selection starts from the previous frames), so a long-lived
    decoder would hear the same audio differently depending on what it decoded before (~0.1 s)."""
    from pocketsphinx import Decoder, get_model_path

    model = get_model_path()
    phone_lm = os.path.join(model, "en-us", "en-us-phone.lm.bin")
    if not os.path.exists(phone_lm):
        raise FileNotFoundError(f"pocketsphinx phonetic language model not found at {phone_lm}")
    return Decoder(
        hmm=os.path.join(model, "en-us", "en-us"),
        allphone=phone_lm,
        lm=None,
        loglevel="FATAL",
        backtrace=False,
        **DECODER_SETTINGS,
    )


def recognise_phones(audio_16k: np.ndarray) -> list[tuple[float, float, str]]:
    """Phones heard in 16 kHz mono audio: [(start_s, end_s, label)], contiguous from 0 to the end
    of the audio; consecutive equal labels (e.g. a pause next to noise) merged."""
    audio = np.asarray(audio_16k, dtype=np.float32).reshape(-1)
    duration = len(audio) / SAMPLE_RATE
    if len(audio) < SAMPLE_RATE // 10:
        return [(0.0, duration, SIL)] if len(audio) else []
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
    decoder = _decoder()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    out: list[list] = []
    for seg in decoder.seg():
        s = seg.start_frame / FRAME_RATE
        e = min((seg.end_frame + 1) / FRAME_RATE, duration)
        if e <= s:
            continue
        lab = cmu_to_arpa(seg.word)
        if out and out[-1][2] == lab:
            out[-1][1] = e
        else:
            out.append([s, e, lab])
    if not out:
        return [(0.0, duration, SIL)]
    out[0][0] = 0.0  # cover the whole clip: the edges are pauses or the phones there
    if out[-1][1] < duration:
        if out[-1][2] == SIL:
            out[-1][1] = duration
        else:
            out.append([out[-1][1], duration, SIL])
    return [(float(s), float(e), lab) for s, e, lab in out]


def phones_to_motion(phones, duration: float, n_frames: int, face: Face, style: dict | None = None) -> np.ndarray:
    """Phones -> x (n_frames, 53) float32 [psi(50) | jaw(3)] through the corpus articulation, mouth only."""
    style = NEUTRAL_STYLE if style is None else style
    lips, jaw_open = articulate(phones, max(duration, n_frames / 25.0), style)
    psi, jaw = controls_to_flame(face, lips, jaw_open, n_frames, style["asymmetry"])
    return np.concatenate([psi, jaw], axis=1).astype(np.float32)


def peer_motion(audio: np.ndarray, n_frames: int, face: Face | str | os.PathLike) -> np.ndarray:
    """The peer's take for 16 kHz audio: x (n_frames, 53) float32 [psi(50) | jaw(3)] at 25 fps.

    `face`: a loaded training.corpus.face.Face or a head folder with semantic controls."""
    if not isinstance(face, Face):
        face = Face.load(face)
    phones = recognise_phones(audio)
    return phones_to_motion(phones, len(audio) / SAMPLE_RATE, n_frames, face)
