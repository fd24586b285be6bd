"""The real server without a model: health, auth, Host checks, limits and bad input → clear 4xx JSON."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.backend.conftest import HTTP, TOKEN, auth, encode
from tests.backend.test_audio import damaged_inputs


def err(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    return body["error"]["code"]


def test_health_needs_no_token_and_reports_no_model(no_model_server):
    r = HTTP.get(no_model_server + "/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "no_model" and body["bundle"] is None and body["queue"] == 0
    assert "no model bundle" in body["detail"]


@pytest.mark.parametrize(
    "path,method", [("/v1/model", "GET"), ("/v1/model/head", "GET"), ("/v1/animate", "POST"), ("/v1/listen", "POST")]
)
@pytest.mark.parametrize(
    "headers", [{}, auth("wrong-token-0123456789"), {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}]
)
def test_every_endpoint_but_health_needs_the_token(no_model_server, path, method, headers):
    r = HTTP.request(method, no_model_server + path, headers=headers)
    assert r.status_code == 401 and err(r) == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"


def test_model_endpoints_report_no_model(no_model_server):
    for path in ("/v1/model", "/v1/model/head"):
        r = HTTP.get(no_model_server + path, headers=auth())
        assert r.status_code == 503 and err(r) == "no_model"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "192.168.0.5", "localhost.evil.example"])
@pytest.mark.parametrize("path", ["/v1/health", "/v1/model", "/openapi.json"])
def test_foreign_host_header_is_refused(no_model_server, host, path):
    r = HTTP.get(no_model_server + path, headers={"Host": host, **auth()})
    assert r.status_code == 400 and err(r) == "bad_host"


def test_loopback_host_names_are_accepted(no_model_server):
    port = no_model_server.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost", f"[::1]:{port}"):
        assert HTTP.get(no_model_server + "/v1/health", headers={"Host": host}).status_code == 200


def post_audio(url, data: bytes, **fields):
    return HTTP.post(
        url + "/v1/animate",
        headers=auth(),
        files={"audio": ("a.wav", data)},
        data={k: str(v) for k, v in fields.items()},
        timeout=30,
    )


@pytest.mark.parametrize("name", list(damaged_inputs(b"\0" * 100)))
def test_bad_audio_is_a_4xx_without_a_model(no_model_server, speech_wav, name):
    r = post_audio(no_model_server, damaged_inputs(speech_wav)[name])
    assert r.status_code in (400, 415) and err(r) == "bad_audio"


@pytest.mark.parametrize(
    "fields,fragment",
    [
        ({"takes": 0}, "takes"),
        ({"takes": 33}, "takes"),
        ({"takes": "many"}, "takes"),
        ({"seed": -1}, "seed"),
        ({"preset": "ultra"}, "preset"),
        ({"sampler": "euler"}, "sampler"),
        ({"steps": 0}, "steps"),
        ({"steps": 1001}, "steps"),
        ({"guidance": "nan"}, "guidance"),
        ({"guidance": 11}, "guidance"),
        ({"start": -1}, "start"),
        ({"encoding": "xml"}, "encoding"),
        ({"rank": "maybe"}, "rank"),
    ],
)
def test_bad_options_are_422(no_model_server, speech_wav, fields, fragment):
    r = post_audio(no_model_server, speech_wav, **fields)
    assert r.status_code == 422 and err(r) == "bad_option"
    assert fragment in r.json()["error"]["message"]


def test_crop_errors_are_422(no_model_server, speech_wav):
    for fields in ({"start": 5.0}, {"start": 2.0, "end": 1.0}):
        r = post_audio(no_model_server, speech_wav, **fields)
        assert r.status_code == 422 and err(r) == "bad_option", r.text


def test_missing_audio_is_422(no_model_server):
    r = HTTP.post(no_model_server + "/v1/animate", headers=auth(), data={"takes": "2"})
    assert r.status_code == 422 and "audio" in r.json()["error"]["message"]


def test_good_audio_without_model_is_no_model(no_model_server, speech_wav):
    r = post_audio(no_model_server, speech_wav)
    assert r.status_code == 503 and err(r) == "no_model"


def test_upload_size_limit(no_model_server):
    big = encode(np.zeros(16000 * 70, np.float32), 16000, "WAV", "FLOAT")  # 4.5 MB > 2 MB limit
    r = post_audio(no_model_server, big)
    assert r.status_code == 413 and err(r) == "too_large"


def test_duration_limit(no_model_server):
    long = encode(np.zeros(8000 * 31, np.float32), 8000, "FLAC")  # 31 s > 30 s limit, small file
    r = post_audio(no_model_server, long)
    assert r.status_code == 413 and err(r) == "too_long"
    r = post_audio(no_model_server, long, start=10)  # cropped under the limit → model step
    assert r.status_code == 503 and err(r) == "no_model"


@pytest.mark.parametrize(
    "body,fragment",
    [
        ({}, "exp"),
        ({"exp": [[0.0] * 50]}, "jaw"),
        ({"exp": [[0.0] * 49], "jaw": [[0.0] * 3]}, "exp.0: List should have at least 50 items"),
        ({"exp": [[0.0] * 50] * 2, "jaw": [[0.0] * 3]}, "frames"),
        ({"exp_b64": "!!!", "jaw": [[0.0] * 3]}, "base64"),
        ({"exp_b64": "AAAA", "jaw": [[0.0] * 3]}, "rows"),
        ({"exp": "text", "jaw": [[0.0] * 3]}, "exp"),
    ],
)
def test_bad_listen_bodies_are_422(no_model_server, body, fragment):
    r = HTTP.post(no_model_server + "/v1/listen", headers=auth(), json=body)
    assert r.status_code == 422 and err(r) == "bad_option"
    assert fragment in r.json()["error"]["message"]


def test_listen_rejects_non_finite_values(no_model_server):
    body = '{"exp": [[NaN' + ", 0.0" * 49 + ']], "jaw": [[0.0, 0.0, Infinity]]}'
    r = HTTP.post(no_model_server + "/v1/listen", headers={**auth(), "Content-Type": "application/json"}, content=body)
    assert r.status_code == 422 and "exp.0.0: Input should be a finite number" in r.json()["error"]["message"]


def test_unknown_path_and_method_are_json(no_model_server):
    r = HTTP.get(no_model_server + "/v2/nothing", headers=auth())
    assert r.status_code == 404 and err(r) == "not_found"
    r = HTTP.get(no_model_server + "/v1/animate", headers=auth())
    assert r.status_code == 405 and err(r) == "method_not_allowed"


def test_openapi_schema_is_published(no_model_server):
    schema = HTTP.get(no_model_server + "/openapi.json").json()
    assert {"/v1/health", "/v1/model", "/v1/model/head", "/v1/animate", "/v1/listen"} <= set(schema["paths"])
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_server_keeps_serving(no_model_server):
    assert HTTP.get(no_model_server + "/v1/health").status_code == 200


def test_streamed_upload_without_length_is_limited_too(no_model_server):
    """A chunked body (no Content-Length) is cut off once it passes the limit."""
    boundary = "thunderboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()

    def body():
        yield head
        for _ in range(40):  # 40 × 100 kB = 4 MB > 2 MB
            yield b"\0" * 100_000
        yield f"\r\n--{boundary}--\r\n".encode()

    r = HTTP.post(
        no_model_server + "/v1/animate",
        content=body(),
        headers={**auth(), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413 and err(r) == "too_large"


def test_token_is_checked_before_the_body_is_read(no_model_server):
    big = b"\0" * (3 * 2**20)  # over the 2 MB limit
    r = HTTP.post(no_model_server + "/v1/animate", files={"audio": ("a.wav", big)})
    assert r.status_code == 401 and err(r) == "unauthorized"  # not 413: nothing was read
