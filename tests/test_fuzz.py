"""Every malformed upload gets its 4xx JSON error (or a transcript when it is valid audio), and the
service stays healthy; then a schema-driven fuzzer walks the OpenAPI description."""

from __future__ import annotations

from collections import Counter

import pytest
import requests
from fastapi.testclient import TestClient

from app.api import create_app
from tests.fuzz_cases import cases, send
from tests.test_service import settings_for, wait_ready

LIMIT_BYTES = 2_000_000
REQUEST_ARGUMENTS = {"method", "url", "params", "headers", "cookies", "data", "files", "json"}


@pytest.fixture(scope="module")
def fuzz_client(quartznet_nemo, tmp_path_factory):
    settings = settings_for(quartznet_nemo, tmp_path_factory.mktemp("cache"), max_upload_bytes=LIMIT_BYTES)
    with TestClient(create_app(settings, exit_on_failure=False), raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


def test_malformed_uploads_get_clear_errors_and_the_service_survives(fuzz_client):
    all_cases = cases(LIMIT_BYTES)
    assert len(all_cases) >= 200
    wrong, statuses = [], Counter()
    for case in all_cases:
        response = send(fuzz_client, case)
        statuses[response.status_code] += 1
        if response.status_code != case.expect:
            wrong.append((case.endpoint, case.name, case.expect, response.status_code, response.text[:200]))
        elif response.status_code != 200:
            message = response.json()["error"]["message"]
            assert len(message) > 10 and "Traceback" not in message, (case.name, message)
    print(f"\nfuzz: {len(all_cases)} cases, statuses {dict(sorted(statuses.items()))}, unexpected {len(wrong)}")
    assert not wrong, "\n".join(map(str, wrong))
    assert fuzz_client.get("/health/ready").status_code == 200
    assert fuzz_client.get("/health/live").status_code == 200


def test_schema_fuzzer_finds_no_server_error(fuzz_client):
    """schemathesis generates requests for every operation in the app's own OpenAPI schema; they are
    sent through the test client so that they reach the running app and its batcher."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_dict(fuzz_client.get("/openapi.json").json())
    counts = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case):
            # schemathesis speaks `requests`; let requests encode the body, then send the bytes.
            kwargs = case.as_transport_kwargs(base_url="http://testserver")
            prepared = requests.Request(**{k: v for k, v in kwargs.items() if k in REQUEST_ARGUMENTS}).prepare()
            response = fuzz_client.request(
                prepared.method, prepared.url, content=prepared.body, headers=dict(prepared.headers)
            )
            counts[response.status_code] += 1
            case.validate_response(response, checks=[not_a_server_error])

        run()
    print(f"\nschemathesis: {sum(counts.values())} requests, statuses {dict(sorted(counts.items()))}")
    assert sum(counts.values()) >= 60
    assert fuzz_client.get("/health/ready").status_code == 200
