"""Speaker embedding S(w): Resemblyzer's bundled GE2E encoder (256-d).

Inputs come from `backend.speaker.speaker_mels` (Resemblyzer's own preprocessing,
re-done in numpy) so the training side and the backend's ONNX path agree.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from backend.speaker import combine_partials, speaker_mels

EMBED_DIM = 256


@lru_cache(maxsize=1)
def voice_encoder():
    """The pretrained GE2E LSTM from the Resemblyzer wheel, on CPU, eval mode."""
    from resemblyzer import VoiceEncoder

    return VoiceEncoder(device="cpu", verbose=False).eval()


@torch.no_grad()
def embed_audio(audio: np.ndarray) -> np.ndarray:
    """16 kHz mono float audio -> (256,) float32 unit-norm speaker embedding."""
    mels = torch.from_numpy(speaker_mels(audio))
    return combine_partials(voice_encoder()(mels).numpy())
