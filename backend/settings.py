"""The service's settings: one dataclass, whose defaults `thunder serve`'s flags take too."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Settings:
    """Limits and switches; `thunder serve` flags map onto these one to one."""

    bundle: Optional[str] = None
    device: str = "auto"
    threads: Optional[int] = None       # onnxruntime intra-op threads (None: one per core)
    allow_remote: bool = False
    extra_hosts: tuple[str, ...] = ()
    max_upload_mb: float = 200.0
    max_seconds: float = 600.0         # of audio per request (after start/end cropping)
    max_queue: int = 8                 # jobs waiting or running; more get 503 busy
    timeout_s: float = 600.0           # queue wait + work, per request


DEFAULTS = Settings()
