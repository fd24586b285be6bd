"""The service's settings: one dataclass, whose defaults `thunder serve`'s flags take too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from backend.contracts import FPS, N_EXP, N_JAW

# A /v1/listen body's bytes per value at most, as an honest client writes it: a float64's
# shortest repr is at most 24 characters ("-1.2345678901234567e-308"), plus its separator
# and some whitespace. The body limit of /v1/listen is its largest valid request.
LISTEN_BYTES_PER_VALUE = 32
LISTEN_SLACK_BYTES = 64 << 10


@dataclass(frozen=True)
class Settings:
    """Limits and switches; `thunder serve` flags map onto these one to one."""

    bundle: Optional[str] = None
    device: str = "auto"
    threads: Optional[int] = None  # onnxruntime intra-op threads (None: one per core)
    lanes: Optional[int] = None  # step-graph lanes (backend/lanes.py; None: 2 on a multi-core CPU)
    allow_remote: bool = False
    extra_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()  # browser origins allowed besides none (the add-on sends no Origin)
    max_upload_mb: float = 200.0
    max_seconds: float = 600.0  # of audio per request (after start/end cropping)
    max_queue: int = 8  # jobs waiting or running; more get 503 busy
    timeout_s: float = 600.0  # queue wait + work, per request
    # Denoiser frame-passes per request (frames × takes × steps walked × 2 with guidance); 0: no limit.
    # The shipped model does 5,000-10,000 a second on 2 cores (thunder soak: 60 s × 32 takes at the
    # default preset, 560,000, took 115 s at load 3), so a request within it ends inside `timeout_s`.
    max_cost: float = 2_000_000
    header_timeout_s: float = 10.0  # to send a request's line and headers, from its first byte
    idle_timeout_s: float = 30.0  # of silence while a request's body is being sent
    keep_alive_s: float = 5.0  # an idle connection between requests is closed after this
    max_connections: int = 256  # open at once; more are answered 503 busy and closed
    require_model: bool = False  # `thunder serve --require-model`: exit non-zero without one

    @property
    def max_frames(self) -> int:
        """Longest take, in frames, a request may carry (animate output, listen input)."""
        return int(self.max_seconds * FPS)

    @property
    def listen_max_bytes(self) -> int:
        """/v1/listen's body limit: its largest valid request (max_frames × 53 values as JSON)."""
        return self.max_frames * (N_EXP + N_JAW) * LISTEN_BYTES_PER_VALUE + LISTEN_SLACK_BYTES

    @property
    def max_in_flight(self) -> int:
        """Requests handled at once (queued jobs, decodes, small GETs); more are answered busy."""
        return max(64, 4 * self.max_queue)


DEFAULTS = Settings()
