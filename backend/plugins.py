"""What other packages plug into `thunder` and `thunder-train`: entry points
(pyproject.toml's [project.entry-points]), found in the installed metadata.

`thunder batch` and `thunder-train demo` come from `studio`, which drives Blender;
neither the backend nor training imports it, so both run (and the backend ships in
the extension zip) without it and without Blender.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

log = logging.getLogger(__name__)


def load(group: str) -> dict[str, object]:
    """name -> loaded object of each entry point in `group`. One that fails to load is
    logged and left out: a broken plug-in must not take `thunder serve` with it."""
    found: dict[str, object] = {}
    for point in entry_points(group=group):
        if point.name in found:
            continue
        try:
            found[point.name] = point.load()
        except Exception as exc:
            log.warning("%s: %s unavailable: %s", group, point.name, exc)
    return found
