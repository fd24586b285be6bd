"""Strict JSON for everything the project writes: manifests, reports, records.

Python's `json` writes NaN and Infinity by default, which no strict parser
(browsers, FastAPI's response encoder, `jq`) accepts: a NaN in a shipped bundle
manifest once made `GET /v1/model` answer 500 and broke Generate for every user.
So writers here refuse non-finite numbers (`allow_nan=False`), and code whose
figures can be undefined (a correlation of a constant, a mean of nothing) says
so explicitly with `finite()`, which turns them into null.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from backend.files import write_atomic


def finite(obj):
    """A copy of `obj` with every non-finite number as None (numpy scalars and
    arrays become plain Python values), ready for strict JSON."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy array or scalar
        return finite(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj, *, indent: int | None = None, compact: bool = False, default=None, sort_keys: bool = False) -> str:
    """Strict JSON text; raises ValueError on NaN or Infinity (call `finite` first
    where a figure may be undefined)."""
    separators = (",", ":") if compact else None
    return json.dumps(obj, indent=indent, separators=separators, allow_nan=False, default=default, sort_keys=sort_keys)


def write_json(path, obj, *, indent: int | None = 2, default=None, sort_keys: bool = False) -> Path:
    """Write strict JSON atomically: a crash leaves the old file or the new one,
    never half of one (and a refused value leaves the old file untouched)."""
    text = dumps(obj, indent=indent, default=default, sort_keys=sort_keys) + "\n"  # refused before writing
    return write_atomic(path, text)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def loads_strict(text: str):
    """Parse JSON, refusing NaN / Infinity."""
    return json.loads(text, parse_constant=_reject_constant)


def read_json(path, *, strict: bool = False):
    """Read a JSON file; files written before the project wrote strict JSON may hold
    NaN / Infinity: read as None unless `strict`."""
    text = Path(path).read_text()
    if strict:
        return loads_strict(text)
    return json.loads(text, parse_constant=lambda _name: None)


def is_strict(path) -> bool:
    """True when the file parses as strict JSON (no NaN / Infinity)."""
    try:
        read_json(path, strict=True)
    except ValueError:
        return False
    return True
