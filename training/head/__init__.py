"""Head model: the stand-in FLAME-format head and loading of real FLAME folders."""

from .io import Head, load_head

__all__ = ["Head", "load_head"]
