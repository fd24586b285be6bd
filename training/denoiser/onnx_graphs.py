"""The denoiser as two ONNX graphs: `denoiser_context` (audio -> per-layer
cross-attention keys/values, once per request) and `denoiser` (one sampler step).
Batch and time are dynamic in both.

Exported with the TorchScript exporter (`dynamo=False`): the model has no
nn.MultiheadAttention (whose length that exporter bakes in), it is ~10x faster to
export here than the dynamo path (2.5 s vs 17-30 s per tiny pair: it matters for
tests and bundle builds), and the graphs match torch at several batch sizes and
lengths (tests/denoiser/test_export.py).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from training.denoiser.model import Denoiser
from training.speech.export import export_onnx


class _Context(nn.Module):
    def __init__(self, model: Denoiser):
        super().__init__()
        self.model = model

    def forward(self, audio, null):
        return self.model.context(audio, null)


class _Step(nn.Module):
    def __init__(self, model: Denoiser):
        super().__init__()
        self.model = model

    def forward(self, x, t, ctx):
        return self.model.step(x, t, ctx)


def _export(module, args, names_in, names_out, axes, path: Path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about shape-dependent Python values
        export_onnx(module, args, path, names_in, names_out, dynamic_axes=axes)


def export_denoiser(model: Denoiser, out_dir: Path) -> dict:
    """Write denoiser_context.onnx and denoiser.onnx; return their manifest entries (no sha)."""
    out_dir = Path(out_dir)
    model = model.eval()
    cfg = model.cfg
    audio = torch.randn(2, 17, cfg.audio_dim)
    null = torch.tensor([0.0, 1.0])
    with torch.no_grad():
        ctx = model.context(audio, null)
    x = torch.randn(2, 17, cfg.n_params)
    t = torch.tensor([999, 3], dtype=torch.long)
    _export(
        _Context(model).eval(),
        (audio, null),
        ["audio", "null"],
        ["ctx"],
        {"audio": {0: "batch", 1: "time"}, "null": {0: "batch"}, "ctx": {2: "batch", 3: "time"}},
        out_dir / "denoiser_context.onnx",
    )
    _export(
        _Step(model).eval(),
        (x, t, ctx),
        ["x", "t", "ctx"],
        ["x0"],
        {
            "x": {0: "batch", 1: "time"},
            "t": {0: "batch"},
            "ctx": {2: "batch", 3: "time"},
            "x0": {0: "batch", 1: "time"},
        },
        out_dir / "denoiser.onnx",
    )
    L, d = cfg.n_layers, cfg.d_model
    return {
        "denoiser_context": {
            "file": "denoiser_context.onnx",
            "inputs": {"audio": ["batch", "time", cfg.audio_dim], "null": ["batch"]},
            "outputs": {"ctx": [L, 2, "batch", "time", d]},
        },
        "denoiser": {
            "file": "denoiser.onnx",
            "inputs": {"x": ["batch", "time", cfg.n_params], "t": ["batch"], "ctx": [L, 2, "batch", "time", d]},
            "outputs": {"x0": ["batch", "time", cfg.n_params]},
            "config": cfg.to_dict(),
        },
    }
