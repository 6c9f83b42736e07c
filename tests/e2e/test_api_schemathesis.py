"""Schemathesis against the running api, from the OpenAPI document it serves: for every
route, generated requests (valid and invalid bodies, ids, queries, headers) never get a
5xx, and every answer matches the document (status code declared, JSON, schema)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.api_support import Tenant, make_tenant
from tests.e2e.harness import ADMIN_TOKEN, Running

EXAMPLES = 40  # per operation: about 1,000 requests in all, within the key's burst and rate
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def tenant(running: Running) -> Tenant:
    return make_tenant(running, numbers=1)


def test_no_5xx_and_every_answer_as_documented(running: Running, tenant: Tenant) -> None:
    schema = schemathesis.openapi.from_url(running.api_url + "/v1/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        platform = operation.path.startswith("/v1/businesses")
        check = _checker(running, ADMIN_TOKEN if platform else tenant.key, operation)
        try:
            check()
        except BaseException as exc:  # every operation is tried; all failures reported
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:2000])
    assert operations >= 20
    assert not failures, "\n\n".join(failures)


def _checker(running: Running, token: str, operation: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"}

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: Any) -> None:
        case.call_and_validate(base_url=running.api_url, headers=headers, checks=CHECKS)

    return check
