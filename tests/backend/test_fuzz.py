"""Fuzz the API from its own OpenAPI schema (hypothesis): never a 500, always the error JSON.

Strategies are derived from /openapi.json as served: every form field of
/v1/animate and the /v1/listen body get schema-valid values most of the time
and arbitrary text some of the time; the audio part is a valid small file, a
damaged one or random bytes. Bounded: a fixed number of examples, no deadline
per example, and a short audio duration so a run stays within seconds.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.backend.conftest import HTTP, auth, encode

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
OK = {200, 400, 413, 415, 422, 503}


def from_schema(schema: dict, components: dict) -> st.SearchStrategy:
    """A hypothesis strategy for the JSON-schema subset FastAPI emits."""
    if "$ref" in schema:
        return from_schema(components[schema["$ref"].rsplit("/", 1)[1]], components)
    if "anyOf" in schema:
        return st.one_of([from_schema(s, components) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "integer":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        return st.integers(None if lo is None else int(lo), None if hi is None else int(hi))
    if kind == "number":
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        return st.floats(
            lo, schema.get("maximum"), allow_nan=False, allow_infinity=False, exclude_min="exclusiveMinimum" in schema
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), components), max_size=schema.get("maxItems", 6))
    if kind == "object":
        props = schema.get("properties", {})
        return st.fixed_dictionaries({}, optional={k: from_schema(v, components) for k, v in props.items()})
    return st.text(max_size=20)


def as_form_value(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


@st.composite
def audio_files(draw, damaged: bool = True) -> bytes:
    kinds = ["valid", "valid", "truncated", "mutated", "random"] if damaged else ["valid"]
    kind = draw(st.sampled_from(kinds))
    if kind == "random":
        return draw(st.binary(max_size=2000))
    rate = draw(st.sampled_from([8000, 16000, 22050, 44100, 48000]))
    channels = draw(st.integers(1, 3))
    fmt = draw(st.sampled_from(["WAV", "FLAC", "OGG"]))
    n = int(draw(st.floats(0.0 if damaged else 0.05, 0.4)) * rate)
    x = np.random.default_rng(draw(st.integers(0, 9))).uniform(-1, 1, (n, channels)).astype(np.float32)
    try:
        data = encode(x, rate, fmt)
    except Exception:  # libsndfile refuses some empty encodes: fuzz the empty file then
        data = b""
    if kind == "truncated":
        return data[: draw(st.integers(0, len(data)))]
    if kind == "mutated" and data:
        buf = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
        return bytes(buf)
    return data


def animate_form(schema: dict, junk_rate: bool = True) -> st.SearchStrategy:
    body_ref = schema["paths"]["/v1/animate"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    components = schema["components"]["schemas"]
    props = components[body_ref["$ref"].rsplit("/", 1)[1]]["properties"]
    fields = {}
    for name, prop in props.items():
        if name == "audio":
            continue
        valid = from_schema(prop, components).map(as_form_value)
        fields[name] = st.one_of(valid, st.text(max_size=12)) if junk_rate else valid
    return st.fixed_dictionaries({}, optional=fields).map(lambda d: {k: v for k, v in d.items() if v is not None})


def check_response(r: httpx.Response) -> None:
    event(f"HTTP {r.status_code}")
    assert r.status_code in OK, (r.status_code, r.text[:300])
    if r.status_code != 200:
        body = r.json()
        assert isinstance(body["error"]["code"], str) and body["error"]["message"]


@pytest.fixture(scope="module")
def schema(no_model_server):
    return HTTP.get(no_model_server + "/openapi.json").json()


def test_fuzz_animate_without_model(no_model_server, schema):
    @FUZZ
    @given(form=animate_form(schema), audio=audio_files())
    def run(form, audio):
        r = HTTP.post(
            no_model_server + "/v1/animate", headers=auth(), data=form, files={"audio": ("fuzz.bin", audio)}, timeout=30
        )
        check_response(r)

    run()
    assert HTTP.get(no_model_server + "/v1/health").status_code == 200


def test_fuzz_listen_without_model(no_model_server, schema):
    body_schema = schema["paths"]["/v1/listen"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    bodies = from_schema(body_schema, schema["components"]["schemas"])

    @FUZZ
    @given(body=st.one_of(bodies, st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5))))
    def run(body):
        r = HTTP.post(no_model_server + "/v1/listen", headers=auth(), json=body, timeout=30)
        check_response(r)
        assert r.status_code in (422, 503)

    run()


def test_fuzz_raw_bodies_without_model(no_model_server):
    @FUZZ
    @given(
        body=st.binary(max_size=3000),
        ctype=st.sampled_from(
            [
                "multipart/form-data; boundary=xyz",
                "multipart/form-data",
                "application/json",
                "text/plain",
                "application/x-www-form-urlencoded",
            ]
        ),
        path=st.sampled_from(["/v1/animate", "/v1/listen"]),
    )
    def run(body, ctype, path):
        r = HTTP.post(no_model_server + path, headers={**auth(), "Content-Type": ctype}, content=body, timeout=30)
        check_response(r)

    run()


def bounded(form: dict) -> dict:
    """Keep a model run short: at most 3 takes, 4 steps, no 1000-step DDPM."""
    form = dict(form)
    if form.get("takes", "").isdigit():
        form["takes"] = str(min(int(form["takes"]), 3))
    if form.get("steps", "").isdigit():
        form["steps"] = str(min(int(form["steps"]), 4))
    if form.get("sampler") == "ddpm":
        form["sampler"] = "ddim"
    return form


def _streamed_result(r) -> dict:
    """The result line of a progress stream (stream=true): every line is JSON, the last the result."""
    import json

    lines = [json.loads(line) for line in r.text.splitlines()]
    assert all(e["event"] == "progress" for e in lines[:-1]) and lines[-1]["event"] == "result", lines[-1]
    return lines[-1]


def test_fuzz_animate_with_model(model_server, schema):
    seen = []

    @settings(FUZZ, max_examples=30)
    @given(form=animate_form(schema, junk_rate=False).map(bounded), audio=audio_files(damaged=False))
    def run(form, audio):
        r = HTTP.post(
            model_server + "/v1/animate", headers=auth(), data=form, files={"audio": ("fuzz.bin", audio)}, timeout=60
        )
        check_response(r)
        seen.append(r.status_code)
        assert r.status_code != 503 or r.json()["error"]["code"] not in ("no_model", "timeout")
        if r.status_code == 200:
            body = r.json() if "ndjson" not in r.headers["content-type"] else _streamed_result(r)
            n = body["n_frames"]
            assert n >= 1 and len(body["takes"]) == int(form.get("takes", 4))
            for take in body["takes"]:
                if body["encoding"] == "json":
                    assert np.array(take["exp"]).shape == (n, 50) and np.array(take["jaw"]).shape == (n, 3)
                else:
                    assert len(take["exp_b64"]) == 4 * ((n * 50 * 4 + 2) // 3)

    run()
    print(sorted(seen))
    assert seen.count(200) >= 10, "the fuzz must reach the model, not only the validators"
    assert HTTP.get(model_server + "/v1/health").json()["status"] == "ok"
