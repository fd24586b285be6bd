"""`thunder` as a user runs it: animate/listen without a server, bench reports, serve + loadtest."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from tests.backend.conftest import HTTP, auth, encode, speechlike
from tests.serve import thunder_serve


def thunder(*args, env=None, timeout=240) -> subprocess.CompletedProcess:
    """`thunder ARGS` in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def thunder_here(capsys, *args) -> tuple[int, str]:
    """`thunder ARGS` through backend.cli.main in this process (no interpreter start-up): (code, stderr)."""
    from backend.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "speech.flac"
    path.write_bytes(encode(speechlike(2.0, rate=44100, seed=4), 44100, "FLAC"))
    return path


def test_animate_npz_matches_the_server(tiny_bundle, model_server, clip, tmp_path):
    out = tmp_path / "takes.npz"
    r = thunder("animate", clip, "--bundle", tiny_bundle, "--takes", 2, "--seed", 7, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "animate" in r.stderr and "100%" in r.stderr, "progress bar expected"
    with np.load(out) as z:
        assert z["exp"].shape == (2, 50, 50) and z["jaw"].shape == (2, 50, 3)
        assert list(z["seeds"]) == [7, 8] and int(z["fps"]) == 25
        exp_cli = z["exp"]
    served = HTTP.post(
        model_server + "/v1/animate",
        headers=auth(),
        files={"audio": clip.read_bytes()},
        data={"takes": "2", "seed": "7"},
        timeout=60,
    ).json()
    exp_http = np.array([t["exp"] for t in served["takes"]], np.float32)
    np.testing.assert_allclose(exp_cli, exp_http, atol=1e-5)  # one code path


def test_animate_json_is_the_protocol_payload(tiny_bundle, clip, tmp_path, capsys):
    out = tmp_path / "takes.json"
    code, err = thunder_here(
        capsys,
        "animate",
        clip,
        "--bundle",
        tiny_bundle,
        "--takes",
        1,
        "--out",
        out,
        "--quiet",
        "--start",
        0.5,
        "--encoding",
        "b64",
    )
    assert code == 0, err
    body = json.loads(out.read_text())
    assert body["n_frames"] == 37 and body["fps"] == 25 and "exp_b64" in body["takes"][0]


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--takes", 0], "takes"),
        (["--sampler", "euler"], "sampler"),
        (["--out", "x.csv"], ".npz or .json"),
    ],
)
def test_animate_bad_options_exit_cleanly(tiny_bundle, clip, tmp_path, capsys, args, fragment):
    base = ["animate", clip, "--bundle", tiny_bundle, "--out", tmp_path / "o.npz"]
    code, err = thunder_here(capsys, *base, *args)
    assert code != 0 and fragment in err


def test_animate_bad_audio_and_missing_bundle_exit_cleanly(tiny_bundle, tmp_path, capsys):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 10)
    code, err = thunder_here(capsys, "animate", junk, "--bundle", tiny_bundle, "--out", tmp_path / "o.npz")
    assert code != 0 and "could not decode audio" in err
    code, err = thunder_here(capsys, "animate", junk, "--bundle", tmp_path / "nowhere", "--out", tmp_path / "o.npz")
    assert code != 0 and "no model bundle" in err


def test_listen(tiny_bundle, engine, clip, tmp_path, capsys):
    takes = tmp_path / "t.npz"
    assert (
        thunder_here(capsys, "animate", clip, "--bundle", tiny_bundle, "--takes", 1, "--out", takes, "--quiet")[0] == 0
    )
    wav = tmp_path / "heard.wav"
    code, err = thunder_here(capsys, "listen", takes, "--bundle", tiny_bundle, "--out", wav)
    if "m2s" not in engine.manifest["graphs"]:
        assert code != 0 and "m2s" in err
        return
    assert code == 0, err
    import soundfile as sf

    audio, rate = sf.read(wav)
    assert rate == 16000 and abs(len(audio) / rate - 2.0) < 0.2


def test_bench_writes_stamped_reports(tiny_bundle, tmp_path, capsys):
    code, err = thunder_here(
        capsys,
        "bench",
        "--bundle",
        tiny_bundle,
        "--durations",
        1,
        "--takes",
        1,
        2,
        "--presets",
        "draft",
        "--samplers",
        "ddim",
        "--out-dir",
        tmp_path,
    )
    assert code == 0, err
    (jpath,) = tmp_path.glob("bench-*.json")
    report = json.loads(jpath.read_text())
    assert report["commit"] and report["date"] and report["machine"]["cores"] >= 1
    assert {(row["takes"], row["sampler"]) for row in report["rows"]} == {
        (1, "dpmpp2m"),
        (2, "dpmpp2m"),
        (1, "ddim"),
        (2, "ddim"),
    }
    assert all(row["rtf"] > 0 and row["host_gemm_gflops"] > 0 for row in report["rows"])
    p = report["profile"]
    assert p["step_matmul_gflop"] > 0 and p["floor_sample_s"] > 0 and p["step_ops_s"]
    assert "Where the time goes" in jpath.with_suffix(".md").read_text()


def test_serve_subprocess_token_file_and_loadtest(tiny_bundle, tmp_path, capsys):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    with thunder_serve(
        "--bundle", tiny_bundle, "--log-level", "warning", env=env, log=tmp_path / "serve.log", ready_s=60
    ) as url:
        assert HTTP.get(url + "/v1/health").json()["status"] == "ok"
        token_file = tmp_path / "config" / "thunder" / "token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert HTTP.get(url + "/v1/model", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        report_path = tmp_path / "load.json"
        code, err = thunder_here(
            capsys,
            "loadtest",
            "--url",
            url,
            "--token",
            token,
            "--requests",
            6,
            "--concurrency",
            3,
            "--seconds",
            1.0,
            "--out",
            report_path,
        )
        assert code == 0, err
        report = json.loads(report_path.read_text())
        assert report["ok"] == 6 and report["errors"] == {} and report["latency_s"]["p99"] > 0


def test_loadtest_refuses_remote_targets(capsys):
    code, err = thunder_here(capsys, "loadtest", "--url", "http://example.com:8765", "--token", "x" * 20)
    assert code != 0 and "loopback" in err
