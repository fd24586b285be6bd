"""ONNX exports of the speech side (called by training/export.py when a bundle is built).

Both use torch's dynamo exporter (opset 18, single file) with dynamic batch and time.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from training.speech.encoder import HOP_25, SpeechEncoder


class _Features25(nn.Module):
    def __init__(self, encoder: SpeechEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, audio):
        return self.encoder.features_25(audio)


def export_onnx(
    module: nn.Module, args: tuple, path, input_names, output_names, dynamic_shapes=None, dynamic_axes=None
) -> Path:
    """dynamo export with `dynamic_shapes`, or the legacy tracer with `dynamic_axes` (much faster;
    fine for graphs without shape arithmetic, such as an LSTM)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    if dynamic_axes is not None:
        exporter = dict(dynamic_axes=dynamic_axes, dynamo=False, opset_version=17)
    else:
        exporter = dict(
            dynamic_shapes=dynamic_shapes, dynamo=True, external_data=False, opset_version=18, verbose=False
        )
    with torch.no_grad():
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names, **exporter)
    return path


def export_audio_encoder(encoder: SpeechEncoder, path) -> Path:
    """Speech encoder -> ONNX at `path`.

    Graph input  `audio`    float32 [B, N]: 16 kHz mono, N a multiple of 640 (one
                            motion frame; pad the clip with zeros up to it).
    Graph output `features` float32 [B, N // 640, C] at 25 fps (C = encoder width,
                            `encoder.dim`; the mean of each pair of 50 Hz frames of
                            the encoder's feature layer).
    Dynamic axes: audio {0: "batch", 1: "samples"}, features {0: "batch", 1: "frames"}.
    """
    batch = torch.export.Dim("batch", min=1, max=64)
    frames = torch.export.Dim("frames", min=2, max=15000)  # N = 640 * frames (up to 10 min)
    example = torch.randn(2, HOP_25 * 50) * 0.1
    return export_onnx(
        _Features25(encoder), (example,), path, ["audio"], ["features"], {"audio": {0: batch, 1: HOP_25 * frames}}
    )


class _SpeakerLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        from training.speech.speaker import voice_encoder

        ve = voice_encoder()
        self.lstm, self.linear = ve.lstm, ve.linear

    def forward(self, mel):
        out, _ = self.lstm(mel)
        embed = torch.relu(self.linear(out[:, -1]))  # last step of the top layer = hidden[-1]
        return embed / torch.linalg.vector_norm(embed, dim=1, keepdim=True).clamp_min(1e-12)


def export_speaker_encoder(path) -> Path:
    """Resemblyzer's GE2E speaker encoder -> ONNX at `path`.

    Graph input  `mel`       float32 [B, F, 40]: power mel partials exactly as
                             `backend.speaker.speaker_mels(audio)` returns them
                             (B partial windows of F = 160 frames, 25 ms / 10 ms).
    Graph output `embedding` float32 [B, 256]: unit-norm embedding of each partial.
    Dynamic axes: mel {0: "batch", 1: "frames"}, embedding {0: "batch"}.
    The utterance embedding is `backend.speaker.combine_partials(embedding)`.
    """
    example = torch.rand(3, 160, 40)
    return export_onnx(
        _SpeakerLSTM(),
        (example,),
        path,
        ["mel"],
        ["embedding"],
        dynamic_axes={"mel": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}},
    )
