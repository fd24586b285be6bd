"""Lanes: the rows of one denoiser pass split across onnxruntime sessions that run side by side.

Why: one sampler step is one pass of the step graph over every take's row (8 takes x 250 frames
for 10 s of speech), and onnxruntime spreads that pass over the cores operator by operator: each
of the graph's ~300 small operators (layer norms, bias adds, softmaxes over 250 x 250 scores)
waits for both cores. Two single-thread sessions, each with half the rows, keep both cores busy
without that hand-over. Measured on the 2-core Intel VM (2026-12-03, a request's denoiser passes:
16 rows once, then 8 rows seven times; 10 interleaved rounds): one 2-thread session 0.881 s best /
1.060 s median, two 1-thread lanes 0.795 / 0.944 s (-10 %, -11 %); at a slower moment of the
host 1.096 / 1.202 s against 0.856 / 1.078 s.

The rows of the step graph are independent (attention runs within a row), so a take's motion
does not depend on how the rows were split, up to float rounding (tested to 1e-5). Which axis of
each input and output holds the rows is read from the graph's manifest entry (the dimension named
"batch"), so any graph with independent rows could use lanes; the bundle gives them to the step
graph only, the one pass that runs once per sampler step.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

BATCH = "batch"  # the manifest's name for the rows axis (docs/bundle.md)


def batch_axes(shapes: dict) -> dict[str, int]:
    """{tensor name: index of its "batch" dimension} from a manifest graph's inputs or outputs."""
    axes = {}
    for name, dims in (shapes or {}).items():
        if BATCH in dims:
            axes[name] = list(dims).index(BATCH)
    return axes


class Lanes:
    """`n` sessions (from `make_session()`) that each run a contiguous share of a pass's rows.

    `in_axes`, `out_axes`: {tensor name: rows axis} (`batch_axes`); every output needs one.
    `run(feeds)` returns None when the pass has fewer rows than lanes (the caller's own session
    is then faster: one lane would leave a core idle)."""

    def __init__(self, make_session: Callable, n: int, in_axes: dict[str, int], out_axes: dict[str, int]):
        if n < 2:
            raise ValueError(f"lanes need n >= 2, got {n}")
        if not in_axes:
            raise ValueError("lanes need the rows axis of at least one input")
        self.sessions = [make_session() for _ in range(n)]
        names = [o.name for o in self.sessions[0].get_outputs()]
        missing = [o for o in names if o not in out_axes]
        if missing:
            raise ValueError(f"no rows axis known for output(s) {', '.join(missing)}")
        self.in_axes, self.out_axes = in_axes, [out_axes[o] for o in names]
        self._pool = ThreadPoolExecutor(n, thread_name_prefix="thunder-lane")
        self._held: dict[str, tuple] = {}  # input name -> (array, bounds, its shares): see _shares

    @property
    def n(self) -> int:
        return len(self.sessions)

    def run(self, feeds: dict) -> list[np.ndarray] | None:
        rows = {v.shape[self.in_axes[k]] for k, v in feeds.items() if k in self.in_axes}
        if len(rows) != 1:
            raise ValueError(f"inputs disagree on the number of rows: {sorted(rows)}")
        n_rows = rows.pop()
        if n_rows < self.n:
            return None
        bounds = tuple(np.linspace(0, n_rows, self.n + 1).round().astype(int))
        shares = {k: self._shares(k, v, bounds) if k in self.in_axes else [v] * self.n for k, v in feeds.items()}
        parts = list(
            self._pool.map(lambda i: self.sessions[i].run(None, {k: s[i] for k, s in shares.items()}), range(self.n))
        )
        return [np.concatenate([p[j] for p in parts], axis=ax) for j, ax in enumerate(self.out_axes)]

    def _shares(self, name: str, value: np.ndarray, bounds: tuple) -> list[np.ndarray]:
        """`value` cut into the lanes' contiguous shares along its rows axis. The engine passes the
        same audio context (8 MB for 8 takes x 10 s) to every step of a request: its shares are cut
        once and kept for as long as the same array comes back. Identity is the key, so a caller must
        hand a new array, not the same one changed in place (the engine builds x and t afresh every step
        and never writes to its contexts)."""
        held = self._held.get(name)
        if held is not None and held[0] is value and held[1] == bounds:
            return held[2]
        ax = self.in_axes[name]
        cut = [slice(None)] * value.ndim
        out = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            cut[ax] = slice(a, b)
            out.append(np.ascontiguousarray(value[tuple(cut)]))  # a copy only where the slice is strided
        self._held[name] = (value, bounds, out)
        return out
