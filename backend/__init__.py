"""THUNDER inference backend: bundle loading, audio decoding, samplers, HTTP service.

Imports numpy, onnxruntime, soundfile and FastAPI only; never torch, `training` or bpy.
"""

__version__ = "0.1.0"
