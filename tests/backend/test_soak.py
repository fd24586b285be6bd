"""`thunder soak` in the suite: a real `thunder serve` process with the tiny bundle, concurrent
clients that leave mid-request, a listen at the documented maximum (600 s = 15,000 frames),
a large animate, 70 idle connections, and SIGTERM with one request running and one queued.
Every bar of the report must hold: no unexpected 5xx, no plain-text or broken answer, JSON
503 `shutting_down` on SIGTERM with a clean log, the listen within 1.5 GB (its wall time is
recorded; `thunder soak`'s report grades it against 60 s), and memory back
within 300 MB of idle. Bounded to about a minute."""

from __future__ import annotations

import json

from backend import soak


def test_soak_and_faults(tiny_bundle, tmp_path):
    report = soak.run(tiny_bundle, clients=6, requests=36, big_seconds=20.0, big_takes=8, max_seconds=600.0)
    jpath, mpath = soak.write(report, tmp_path)
    assert json.loads(jpath.read_text())["bars"] == json.loads(json.dumps(report["bars"]))
    assert "| listen_max_peak_mb |" in mpath.read_text()
    # The listen's wall time is a speed figure: `thunder soak` grades it in its report; here, on a
    # shared machine whose speed drifts (the same listen took 22 s, 33 s alone and 70 s inside the
    # suite on one VM), only that it was measured. Every other bar is about correctness and must hold.
    timed = {"listen_max_wall_s"}
    failed = {name: bar["value"] for name, bar in report["bars"].items() if not bar["met"] and name not in timed}
    assert not failed, failed
    assert report["bars"]["listen_max_wall_s"]["value"] > 0
    assert report["listen_max"]["frames"] == 15000 and report["listen_max"]["wav_seconds"] == 600.0
    outcomes = report["outcomes"]
    assert outcomes["bad_audio"] == {"400:bad_audio": 6}
    assert set(outcomes["animate_left"]) <= {"left", "ok"} and set(outcomes["listen_left"]) <= {"left", "ok"}
    assert report["idle_connections"]["outcome"] == "ok"
    assert report["sigterm"]["answered_within_s"] < 2.0
