"""THUNDER training: head model, corpus engine, speech front-end, M2S, denoiser, export."""

__version__ = "0.1.0"
