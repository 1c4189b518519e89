"""Schemathesis: generated requests for every operation of /api/schema/, as a CA admin with a token.

No response may be a 5xx, and every response must match the schema (status code, content type,
headers, body); invalid input (negative mode) must be refused with a 4xx. Runs against the WSGI
app in-process, inside the test's transaction. (Schemathesis's own ``from_fixture`` loader does
not work with pytest 9, so each test drives Hypothesis itself with ``operation.as_strategy()``.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from authority.models import CertificateAuthority
from authority.services import certificate_issue
from ca_portal.wsgi import application
from enrollment.services import peer_approve
from tests.api.conftest import ANY_FQDN_CSR, register

pytestmark = pytest.mark.django_db

OPERATIONS = [
    ("GET", "/api/v1/ca"),
    ("GET", "/api/v1/peers"),
    ("POST", "/api/v1/peers"),
    ("GET", "/api/v1/peers/{id}"),
    ("POST", "/api/v1/peers/{id}/approve"),
    ("POST", "/api/v1/peers/{id}/reject"),
    ("POST", "/api/v1/peers/{id}/revoke"),
    ("GET", "/api/v1/peers/{id}/bundle"),
    ("GET", "/api/v1/certificates"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/gateway/bundle"),  # with a person's token: 401 (the sync token's own tests: tests/bundles)
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "40"))


@pytest.fixture
def _in_test_transaction() -> Iterator[None]:
    """Django's test client keeps the request signals from closing the test's connection; do the same."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def peer_ids(ca: CertificateAuthority, owner: Any, admin: Any, second_admin: Any) -> list[int]:
    """Something to find: a pending client, an admin's pending gateway, an issued peer."""
    pending = register(owner)
    gateway = register(admin, fqdn="gw.example.com", csr=ANY_FQDN_CSR, kind="server", address="192.0.2.1")
    issued = register(owner, fqdn="issued.example.com", csr=ANY_FQDN_CSR)
    request = peer_approve(peer_id=issued.pk, approver=admin, actor=admin, enqueue=False).certificate_request
    assert request is not None
    certificate_issue(request_id=request.pk)
    return [pending.pk, gateway.pk, issued.pk]


@pytest.fixture
def api_schema(_in_test_transaction: None) -> Any:
    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


def test_it_fuzzes_every_operation_of_the_schema(api_schema: Any) -> None:
    found = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}

    assert found == set(OPERATIONS)


def negative_data_refused(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis's negative_data_rejection, plus 413: a body over 64 KiB is refused before it is
    parsed, which is as much a refusal of invalid data as a 400."""
    if response.status_code == 413:
        return True
    return negative_data_rejection(ctx, response, case)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_it_answers_generated_requests_within_the_schema(
    method: str, path: str, mode: GenerationMode, api_schema: Any, peer_ids: list[int], second_admin: Any
) -> None:
    if mode is GenerationMode.NEGATIVE and path == "/api/v1/ca":
        pytest.skip("GET /api/v1/ca takes no input, so there is nothing to make invalid")
    operation = api_schema[path][method]
    strategy = operation.as_strategy(generation_mode=mode)
    if "{id}" in path:
        # Most cases aim at real peers, so approve, reject and detail get past the 404.
        real = [operation.as_strategy(generation_mode=mode, path_parameters={"id": pk}) for pk in peer_ids]
        strategy = st.one_of(strategy, *real)
    headers = {"Authorization": f"Token {Token.objects.create(user=second_admin).key}"}
    checks = [*CHECKS, negative_data_refused] if mode is GenerationMode.NEGATIVE else CHECKS

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=checks)

    run()
