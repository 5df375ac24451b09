"""The public API fuzzed from its own OpenAPI document (issue 17): no 5xx, no answer
that breaks the document, and everything accepted can be read back.

A real server process on SQLite, a bounded number of examples per operation
(the whole test stays well under two minutes). Long-lived routes (the worker's
dequeue long poll, the sockets, which the document does not list) are left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests import support
from tests.api.conftest import MANIFEST

#: examples per operation: enough for the hostile shapes, bounded in time
EXAMPLES = 12
#: left out: long polls, and calls that end the test's own worker or key
SKIPPED = ("/worker/v1/dequeue", "/worker/v1/deregister")
#: long-lived realtime routes (subscriptions, streams) are left out
LONG_LIVED = ("/realtime/", "/streams/")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Stack]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    with support.open_stack("sqlite", folder) as stack:
        registration = {"version": "v1", "name": "fuzz", "concurrency": 1, "tasks": [MANIFEST]}
        r = httpx.post(
            stack.server.url + "/worker/v1/register",
            json=registration,
            headers={"Authorization": f"Bearer {stack.key}"},
        )
        assert r.status_code == 200, r.text
        yield stack


def test_no_operation_answers_a_5xx_or_breaks_its_document(stack: support.Stack) -> None:
    schema = schemathesis.openapi.from_url(stack.server.url + "/openapi.json")
    headers = {"Authorization": f"Bearer {stack.key}"}
    failures: list[str] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the OpenAPI document is invalid: {result.err()}"
        operation = result.ok()
        if operation.path in SKIPPED or any(part in operation.path for part in LONG_LIVED):
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            # the same examples on every run: a failure here is a finding, never noise
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(base_url=stack.server.url, headers=headers, timeout=10)
            case.validate_response(
                response, checks=[not_a_server_error, response_schema_conformance]
            )

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # report every operation's failure
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
    _everything_accepted_reads_back(stack.server.url, headers)


def _everything_accepted_reads_back(url: str, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
        for path in ("/api/v1/runs?page[size]=100", "/api/v1/waitpoints/tokens?page[size]=100"):
            listed = http.get(path)
            assert listed.status_code == 200, listed.text
        for item in http.get("/api/v1/runs?page[size]=100").json()["data"]:
            for read in (f"/api/v3/runs/{item['id']}", f"/api/v1/runs/{item['id']}/logs"):
                r = http.get(read)
                assert r.status_code == 200, (read, r.text)
        for path in ("/api/v1/schedules", "/api/v1/queues", "/api/v1/events"):
            r = http.get(path)
            assert r.status_code == 200, (path, r.text)
