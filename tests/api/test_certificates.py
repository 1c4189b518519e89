"""GET /api/v1/certificates: scope by role, filters, and the CSV export."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from authority.models import Certificate, CertificateAuthority
from authority.services import certificate_issue
from enrollment.services import peer_approve
from tests.api.conftest import ANY_FQDN_CSR, register, token_client

pytestmark = pytest.mark.django_db

URL = "/api/v1/certificates"
# The inventory page's export columns: the API's CSV writes the same (review, usability 1).
COLUMNS = [
    "serial", "fqdn", "kind", "owner", "status", "not_before", "not_after", "issued_at", "revoked_at",
    "revocation_reason", "fingerprint_sha256", "peer_id",
]  # fmt: skip


def _issue(owner: Any, approver: Any, **options: Any) -> Certificate:
    peer = register(owner, **options)
    request = peer_approve(peer_id=peer.pk, approver=approver, actor=approver, enqueue=False).certificate_request
    assert request is not None
    certificate = certificate_issue(request_id=request.pk)
    assert certificate is not None
    return certificate


@pytest.fixture
def alices(ca: CertificateAuthority, owner: Any, admin: Any) -> Certificate:
    return _issue(owner, admin)


@pytest.fixture
def mallorys(ca: CertificateAuthority, other_user: Any, admin: Any) -> Certificate:
    return _issue(other_user, admin, fqdn="mallory.example.com", csr=ANY_FQDN_CSR)


def _serials(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [c["serial"] for c in response.json()["results"]]


def test_it_lists_a_certificate_with_its_fields(alices: Certificate, owner: Any) -> None:
    data = token_client(owner).get(URL).json()

    assert data["count"] == 1
    (row,) = data["results"]
    assert list(row) == COLUMNS
    assert row["serial"] == alices.serial
    assert row["fqdn"] == "client.example.com"
    assert row["fingerprint_sha256"] == alices.fingerprint_sha256
    assert (row["status"], row["owner"]) == ("valid", "alice")


def test_it_shows_roaming_users_only_their_own(
    alices: Certificate, mallorys: Certificate, owner: Any, other_user: Any
) -> None:
    assert _serials(token_client(owner).get(URL)) == [alices.serial]
    assert _serials(token_client(other_user).get(URL)) == [mallorys.serial]


@pytest.mark.parametrize("persona", ["admin", "second_admin", "auditor"])
def test_it_shows_admins_and_auditors_all(
    persona: str, alices: Certificate, mallorys: Certificate, request: pytest.FixtureRequest
) -> None:
    assert set(_serials(token_client(request.getfixturevalue(persona)).get(URL))) == {alices.serial, mallorys.serial}


def test_it_marks_expired_certificates(alices: Certificate, owner: Any) -> None:
    Certificate.objects.filter(pk=alices.pk).update(not_after=timezone.now() - timedelta(days=1))

    assert token_client(owner).get(URL).json()["results"][0]["status"] == "expired"


def test_it_filters(alices: Certificate, mallorys: Certificate, auditor: Any) -> None:
    client = token_client(auditor)
    colon_serial = ":".join(alices.serial.upper()[i : i + 2] for i in range(0, len(alices.serial), 2))

    assert _serials(client.get(URL, {"fqdn": "mallory.example.com"})) == [mallorys.serial]
    assert _serials(client.get(URL, {"serial": alices.serial})) == [alices.serial]
    assert _serials(client.get(URL, {"serial": "00" + colon_serial})) == [alices.serial]
    assert _serials(client.get(URL, {"expires_before": (timezone.now() + timedelta(days=10)).isoformat()})) == []
    # mallory's was issued after alice's (over a second later on a loaded machine): after both.
    soon = (max(alices.not_after, mallorys.not_after) + timedelta(seconds=1)).isoformat()
    assert set(_serials(client.get(URL, {"expires_before": soon}))) == {alices.serial, mallorys.serial}
    assert _serials(client.get(URL, {"expires_before": "2999-01-01"})) != []


@pytest.mark.parametrize(
    "params",
    [{"serial": "xyz"}, {"expires_before": "soon"}, {"expires_before": "9999-12-31T23:59:59-14:00"}, {"format": "xml"}],
    ids=str,
)
def test_it_gives_400_for_a_bad_filter(params: dict[str, str], owner: Any) -> None:
    response = token_client(owner).get(URL, params)

    assert response.status_code == 400
    assert set(response.json()["errors"]) == set(params)


def _csv(response: Any) -> list[list[str]]:
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="certificates.csv"'
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_it_exports_csv(alices: Certificate, mallorys: Certificate, auditor: Any) -> None:
    rows = _csv(token_client(auditor).get(URL, {"format": "csv"}))

    assert rows[0] == COLUMNS
    assert len(rows) == 3
    by_serial = {row[0]: dict(zip(COLUMNS, row, strict=True)) for row in rows[1:]}
    assert by_serial[alices.serial]["fqdn"] == "client.example.com"
    assert by_serial[alices.serial]["owner"] == "alice"
    assert by_serial[mallorys.serial]["status"] == "valid"


def test_it_exports_csv_with_the_same_scope_and_filters(alices: Certificate, mallorys: Certificate, owner: Any) -> None:
    assert [row[0] for row in _csv(token_client(owner).get(URL, {"format": "csv"}))[1:]] == [alices.serial]
    assert _csv(token_client(owner).get(URL, {"format": "csv", "fqdn": "mallory.example.com"})) == [COLUMNS]


def test_it_exports_a_header_row_when_there_is_nothing(owner: Any) -> None:
    assert _csv(token_client(owner).get(URL, {"format": "csv"})) == [COLUMNS]


def test_it_defuses_spreadsheet_formulas_in_csv(ca: CertificateAuthority, django_user_model: Any, admin: Any) -> None:
    sneaky = django_user_model.objects.create_user("+cmd", "x@example.org", "pw")
    _issue(sneaky, admin, fqdn="sneaky.example.com", csr=ANY_FQDN_CSR)

    rows = _csv(token_client(admin).get(URL, {"format": "csv"}))

    assert rows[1][COLUMNS.index("owner")] == "'+cmd"


def test_a_revoked_certificate_is_revoked_in_json_and_csv(
    alices: Certificate, mallorys: Certificate, admin: Any
) -> None:
    from authority.revocation import certificate_revoke

    certificate_revoke(certificate_id=mallorys.pk, reason="keyCompromise", actor=admin)
    client = token_client(admin)

    listed = {row["serial"]: row["status"] for row in client.get(URL).json()["results"]}
    rows = _csv(client.get(URL, {"format": "csv"}))
    exported = {row[0]: dict(zip(COLUMNS, row, strict=True)) for row in rows[1:]}

    assert listed == {alices.serial: "valid", mallorys.serial: "revoked"}
    assert exported[mallorys.serial]["status"] == "revoked"
    assert exported[mallorys.serial]["revocation_reason"] == "keyCompromise"
    assert exported[alices.serial]["status"] == "valid"


def test_the_api_csv_is_the_inventory_export(alices: Certificate, mallorys: Certificate, admin: Any) -> None:
    """Same columns, same rows, same cells, newest first: one definition for both."""
    from tests.conftest import login

    api = b"".join(token_client(admin).get(URL, {"format": "csv"}).streaming_content)
    from django.test import Client

    page_client = Client()
    login(page_client, admin)
    page = page_client.get("/audit/certificates/export.csv")

    assert page.status_code == 200
    assert api == b"".join(page.streaming_content)
