"""Speaker embedding: numpy preparation + GE2E equals Resemblyzer; ONNX equals torch."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from resemblyzer import preprocess_wav

from backend.speaker import combine_partials, speaker_mels
from training.speech.export import export_speaker_encoder
from training.speech.speaker import embed_audio, voice_encoder


def test_embedding_equals_resemblyzer(speech):
    ours = embed_audio(speech)
    ref = voice_encoder().embed_utterance(preprocess_wav(speech))
    assert ours.shape == (256,)
    assert np.abs(ours - ref).max() < 1e-5


def test_speaker_mels_shape_and_errors(speech):
    mels = speaker_mels(np.tile(speech, 3))
    assert mels.ndim == 3 and mels.shape[1:] == (160, 40) and mels.shape[0] > 1
    with pytest.raises(ValueError):
        speaker_mels(np.zeros((2, 100), np.float32))


def test_onnx_speaker_encoder(tmp_path, speech, other_speech):
    path = export_speaker_encoder(tmp_path / "speaker.onnx")
    sess = ort.InferenceSession(str(path))
    assert [i.name for i in sess.get_inputs()] == ["mel"] and [o.name for o in sess.get_outputs()] == ["embedding"]
    odd = np.random.rand(1, 37, 40).astype(np.float32)
    for mels in (speaker_mels(speech), speaker_mels(np.tile(other_speech, 2)), odd):
        out = sess.run(None, {"mel": mels})[0]
        with torch.no_grad():
            ref = voice_encoder()(torch.from_numpy(mels)).numpy()
        assert out.shape == (len(mels), 256)
        assert np.abs(out - ref).max() < 1e-4
    a = combine_partials(sess.run(None, {"mel": speaker_mels(speech)})[0])
    b = combine_partials(sess.run(None, {"mel": speaker_mels(other_speech)})[0])
    assert np.abs(a - embed_audio(speech)).max() < 1e-4
    assert a @ b < 0.95  # two different voices are told apart
