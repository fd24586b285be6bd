"""Schemathesis against the served OpenAPI schema: the schema states shapes, ranges and sizes
precisely enough that a schema-driven fuzzer writes valid requests too, and reaches 200 on
/v1/animate and /v1/listen; whatever it sends, no 5xx and no error that is not the protocol's
JSON. Bounded: a fixed number of cases per operation and mode, derandomised."""

from __future__ import annotations

import io

import numpy as np
import pytest
import schemathesis
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation.modes import GenerationMode

from tests.backend.conftest import HTTP, auth

CASES = {GenerationMode.POSITIVE: 60, GenerationMode.NEGATIVE: 30}


@st.composite
def wav_files(draw) -> bytes:
    """What a client uploads as audio/wav: a short real WAV (the schema names the media types)."""
    rate = draw(st.sampled_from([8000, 16000, 44100]))
    seconds = draw(st.floats(0.05, 0.5))
    x = np.random.default_rng(draw(st.integers(0, 9))).uniform(-0.5, 0.5, int(seconds * rate))
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), rate, format="WAV")
    return buf.getvalue()


@pytest.fixture(scope="module")
def api(model_server):
    schemathesis.openapi.media_type("audio/wav", wav_files())
    return schemathesis.openapi.from_dict(HTTP.get(model_server + "/openapi.json").json())


@pytest.mark.parametrize("path", ["/v1/animate", "/v1/listen"])
@pytest.mark.parametrize("mode", list(CASES), ids=lambda m: m.value)
def test_schemathesis_reaches_200_and_never_5xx(api, model_server, path, mode):
    operation = api[path]["POST"]
    seen: dict[int, int] = {}
    not_json = []

    @settings(
        max_examples=CASES[mode],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case):
        response = case.call(base_url=model_server, headers=auth(), timeout=60)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        if response.status_code >= 400:
            try:
                assert response.json()["error"]["code"]
            except (ValueError, KeyError, TypeError, AssertionError):
                not_json.append((response.status_code, response.content[:200]))

    check()
    assert not [s for s in seen if s >= 500], seen
    assert not not_json, not_json
    if mode is GenerationMode.POSITIVE:
        assert seen.get(200, 0) > 0, f"no valid request among {seen}"
