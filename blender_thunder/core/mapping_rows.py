"""A mapping channel's sources as one line of text, for the panel's mapping list.

No bpy. `smile_L 0.5, smile_R 0.5`: control names, each with an optional
weight (1 when left out), separated by commas. The list edits this text; the mapping
(core/retarget.py) holds the dict.
"""

from __future__ import annotations

import math
import re

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def format_sources(sources: dict[str, float]) -> str:
    parts = []
    for name, weight in sources.items():
        w = float(weight)
        parts.append(name if w == 1.0 else f"{name} {w:g}")
    return ", ".join(parts)


def parse_sources(text: str) -> dict[str, float]:
    """format_sources' inverse. ValueError says which part is wrong."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        bits = part.replace(":", " ").replace("*", " ").split()
        name = bits[0]
        if not _NAME.match(name) or len(bits) > 2:
            raise ValueError(f"{part!r} is not 'control' or 'control weight'")
        try:
            weight = float(bits[1]) if len(bits) == 2 else 1.0
        except ValueError:
            raise ValueError(f"{part!r}: the weight {bits[1]!r} is not a number") from None
        if not math.isfinite(weight):
            raise ValueError(f"{part!r}: the weight is not finite")
        if name in out:
            raise ValueError(f"control {name!r} appears twice")
        out[name] = weight
    return out
