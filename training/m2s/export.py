"""M2S -> ONNX: one graph from FLAME parameters through the head to mel and unit logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from training.m2s.model import M2SFromParams
from training.speech.export import export_onnx


def export_m2s(model: M2SFromParams, head_dir, path) -> Path:
    """Export a trained M2SFromParams to ONNX at `path` (single file, opset 18, dynamo exporter).

    Graph inputs:
      `exp`     float32 [B, T, 50]  FLAME expression psi at 25 fps
      `jaw`     float32 [B, T, 3]   jaw rotation, axis-angle radians
      `speaker` float32 [B, 256]    GE2E embedding (backend.speaker + speaker.onnx)
    Graph outputs:
      `mel`         float32 [B, 4T, 80]       log-mel (backend.features definition), 100 Hz
      `unit_logits` float32 [B, 2T, n_units]  speech-unit logits, 50 Hz
    Dynamic axes: batch (B) on every tensor, time T on exp/jaw (4T / 2T on the outputs).
    The head (mouth2s: the head's mouth vertices, face2s: all) is inside the graph;
    `head_dir` must be the head the model was trained on (checked by head_id).
    """
    if model.vertices is not None:
        from training.head import load_head

        head = load_head(head_dir)
        idx = model.vertices.indices.numpy()
        ours = model.vertices.v_template.numpy()
        if idx.max() >= len(head.v_template) or not np.allclose(head.v_template[idx], ours, atol=1e-6):
            raise ValueError(f"{head_dir} is not the head this M2S model was trained on")
    batch = torch.export.Dim("batch", min=1, max=256)
    time = torch.export.Dim("time", min=2, max=15000)
    example = (torch.zeros(2, 50, 50), torch.zeros(2, 50, 3), torch.nn.functional.normalize(torch.ones(2, 256), dim=1))
    return export_onnx(
        model.eval(),
        example,
        path,
        ["exp", "jaw", "speaker"],
        ["mel", "unit_logits"],
        {"exp": {0: batch, 1: time}, "jaw": {0: batch, 1: time}, "speaker": {0: batch}},
    )
