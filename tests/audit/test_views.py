"""The auditor pages: who may see them (the audit log and verify too), the inventory's filter form
(and its errors), exports, the chain of custody, the dashboard, and bounded queries. The audit log
page itself is tested in test_log_views.py."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from authority.audit import audit_record
from authority.models import AuditEvent, Certificate, CertificateAuthority, Crl
from bundles.models import BundleDownload
from bundles.services import bundle_download, bundle_render
from tests.audit.conftest import ALPHA, BETA, DELTA, GAMMA, World, body, bulk_certificates
from tests.bundles.conftest import issue
from tests.conftest import login

pytestmark = pytest.mark.django_db

PERSONAS = ("owner", "other_user", "admin", "auditor", "anonymous")
EXPECTED = {"owner": 403, "other_user": 403, "admin": 200, "auditor": 200, "anonymous": 302}


@pytest.fixture
def clients(owner: Any, other_user: Any, admin: Any, auditor: Any) -> dict[str, Client]:
    result = {"anonymous": Client()}
    for persona, user in {"owner": owner, "other_user": other_user, "admin": admin, "auditor": auditor}.items():
        client = Client()
        login(client, user)
        result[persona] = client
    return result


def listed(response: Any) -> list[str]:
    """The FQDNs in the inventory table, in order."""
    return re.findall(r'<a href="/audit/certificates/[0-9a-f]+/"><code>([^<]+)</code>', body(response))


# --- who may see what ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dashboard", "certificates", "export-csv", "export-json", "certificate", "log"])
def test_personas_get(name: str, world: World, clients: dict[str, Client]) -> None:
    args = [world.serial(ALPHA)] if name == "certificate" else []
    url = reverse(f"audit:{name}", args=args)

    got = {persona: clients[persona].get(url).status_code for persona in PERSONAS}

    assert got == EXPECTED, url
    assert clients["anonymous"].get(url)["Location"] == f"/login/?next={url}"


def test_personas_verify(world: World, clients: dict[str, Client]) -> None:
    url = reverse("audit:verify")
    events = AuditEvent.objects.count()

    got = {persona: clients[persona].post(url).status_code for persona in PERSONAS}

    assert got == EXPECTED
    assert AuditEvent.objects.count() == events  # verifying records nothing


@pytest.mark.parametrize("name", ["dashboard", "certificates", "export-csv", "log"])
def test_pages_refuse_post(name: str, clients: dict[str, Client], ca: CertificateAuthority) -> None:
    assert clients["auditor"].post(reverse(f"audit:{name}")).status_code == 405
    assert clients["admin"].post(reverse(f"audit:{name}")).status_code == 405


def test_verify_refuses_get(clients: dict[str, Client], ca: CertificateAuthority) -> None:
    assert clients["auditor"].get(reverse("audit:verify")).status_code == 405


def test_verify_needs_the_csrf_token(auditor: Any, ca: CertificateAuthority) -> None:
    client = Client(enforce_csrf_checks=True)
    login(client, auditor)

    assert client.post(reverse("audit:verify")).status_code == 403
    page = client.get(reverse("audit:log"))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body(page))
    assert token is not None
    response = client.post(reverse("audit:verify"), {"csrfmiddlewaretoken": token.group(1)})
    assert response.status_code == 200
    assert 'id="verify-result"' in body(response)


def test_pages_are_not_cached(world: World, erin: Client) -> None:
    for name in ("dashboard", "certificates", "export-csv", "log"):
        assert "no-store" in erin.get(reverse(f"audit:{name}"))["Cache-Control"]


# --- the inventory page ----------------------------------------------------------------------


def test_inventory_lists_newest_first_with_links(world: World, erin: Client) -> None:
    response = erin.get(reverse("audit:certificates"))

    assert listed(response) == [DELTA, GAMMA, BETA, ALPHA]
    text = body(response)
    assert "Showing 1–4 of 4 certificates." in text
    assert reverse("audit:certificate", args=[world.serial(BETA)]) in text
    assert 'class="status status-revoked"' in text
    assert 'class="status status-expired"' in text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"q": "mallory"}, [DELTA, GAMMA]),
        ({"q": "alp"}, [ALPHA]),
        ({"status": "revoked"}, [BETA]),
        ({"status": "expired"}, [GAMMA]),
        ({"status": "valid", "sort": "fqdn", "dir": "asc"}, [ALPHA, DELTA]),
        ({"expiring_within": "30"}, [ALPHA]),
        ({"issued_from": "2025-02-01", "issued_to": "2025-03-10"}, [GAMMA, BETA]),
        ({"sort": "expires", "dir": "asc"}, [GAMMA, ALPHA, DELTA, BETA]),
        ({"sort": "fqdn", "dir": "desc"}, [GAMMA, DELTA, BETA, ALPHA]),
        ({"sort": "owner", "dir": "desc", "status": "valid"}, [DELTA, ALPHA]),
        ({"sort": "issued", "dir": "asc"}, [ALPHA, BETA, GAMMA, DELTA]),
    ],
)
def test_inventory_filters_and_sorts(world: World, erin: Client, query: dict[str, str], expected: list[str]) -> None:
    response = erin.get(reverse("audit:certificates"), query)

    assert response.status_code == 200
    assert listed(response) == expected


def test_search_by_serial(world: World, erin: Client) -> None:
    serial = world.serial(GAMMA)

    assert listed(erin.get(reverse("audit:certificates"), {"q": serial[:12].upper()})) == [GAMMA]


def test_sort_headers_and_exports_keep_the_filters(world: World, erin: Client) -> None:
    text = body(erin.get(reverse("audit:certificates"), {"status": "valid", "sort": "fqdn", "dir": "asc"}))

    assert 'href="?status=valid&amp;sort=fqdn&amp;dir=desc"' in text  # clicking the active column flips it
    assert 'href="/audit/certificates/export.csv?status=valid&amp;sort=fqdn&amp;dir=asc"' in text
    assert 'href="/audit/certificates/export.json?status=valid&amp;sort=fqdn&amp;dir=asc"' in text


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"issued_from": "yesterday"}, "issued_from", "Enter a valid date."),
        ({"issued_to": "2025-13-40"}, "issued_to", "Enter a valid date."),
        ({"expiring_within": "-3"}, "expiring_within", "greater than or equal to 0"),
        ({"expiring_within": "soon"}, "expiring_within", "Enter a whole number."),
        ({"expiring_within": "99999999999999999999"}, "expiring_within", "less than or equal to"),
        ({"sort": "serial; DROP TABLE"}, "sort", "Select a valid choice."),
        ({"dir": "sideways"}, "dir", "Select a valid choice."),
        ({"status": "lost"}, "status", "Select a valid choice."),
        ({"issued_from": "2025-05-01", "issued_to": "2025-04-01"}, "issued_to", "before the start date"),
        ({"q": "x" * 500}, "q", "at most 160 characters"),
    ],
)
def test_bad_filters_show_an_error_on_the_form(
    world: World, erin: Client, query: dict[str, str], field: str, message: str
) -> None:
    response = erin.get(reverse("audit:certificates"), query)

    assert response.status_code == 200
    text = body(response)
    assert 'id="filter-errors"' in text
    assert message in text
    assert f'id="id_{field}"' in text
    assert listed(response) == []  # nothing is shown for filters that do not mean anything


@pytest.mark.parametrize("page", ["0", "-1", "abc", "99999999999999999999999", "1e3"])
def test_odd_page_numbers_are_page_one_or_empty(world: World, erin: Client, page: str) -> None:
    response = erin.get(reverse("audit:certificates"), {"page": page})

    assert response.status_code == 200
    assert listed(response) in ([DELTA, GAMMA, BETA, ALPHA], [])


def test_pagination(ca: CertificateAuthority, owner: Any, admin: Any, erin: Client) -> None:
    bulk_certificates(ca, owner, admin, 120)

    first = erin.get(reverse("audit:certificates"), {"sort": "fqdn", "dir": "asc"})
    third = erin.get(reverse("audit:certificates"), {"sort": "fqdn", "dir": "asc", "page": "3"})

    assert len(listed(first)) == 50
    assert len(listed(third)) == 20
    assert "Showing 1–50 of 120 certificates." in body(first)
    assert "Page 1 of 3" in body(first)
    assert 'href="?sort=fqdn&amp;dir=asc&amp;page=2" rel="next"' in body(first)
    assert "Showing 101–120 of 120" in body(third)
    assert 'rel="next"' not in body(third)
    assert 'href="?sort=fqdn&amp;dir=asc&amp;page=2" rel="prev"' in body(third)
    assert not set(listed(first)) & set(listed(third))


def test_the_page_of_fifty_has_bounded_queries(
    ca: CertificateAuthority, owner: Any, admin: Any, erin: Client, django_assert_max_num_queries: Any
) -> None:
    bulk_certificates(ca, owner, admin, 1, prefix="one")
    url = reverse("audit:certificates")
    erin.get(url)  # the first request of a session makes the site profile row; measure the next ones
    with django_assert_max_num_queries(20) as small:
        assert len(listed(erin.get(url, {"q": "alice"}))) == 1
    bulk_certificates(ca, owner, admin, 80, prefix="many")

    with django_assert_max_num_queries(len(small.captured_queries)) as large:
        assert len(listed(erin.get(url, {"q": "alice", "sort": "owner"}))) == 50

    assert len(large.captured_queries) == len(small.captured_queries)  # no query per row


def test_admin_pages_have_bounded_queries(
    ca: CertificateAuthority, owner: Any, admin: Any, django_assert_max_num_queries: Any
) -> None:
    client = Client()
    login(client, admin)
    bulk_certificates(ca, owner, admin, 60)

    with django_assert_max_num_queries(25):
        assert len(listed(client.get(reverse("audit:certificates")))) == 50
    with django_assert_max_num_queries(25):
        assert client.get(reverse("audit:dashboard")).status_code == 200
    with django_assert_max_num_queries(25):
        assert client.get(reverse("audit:log")).status_code == 200


# --- exports ---------------------------------------------------------------------------------


def test_csv_export(world: World, erin: Client) -> None:
    response = erin.get(reverse("audit:export-csv"), {"q": "mallory", "sort": "fqdn", "dir": "asc"})

    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(r'attachment; filename="certificates-\d{8}T\d{6}Z\.csv"', response["Content-Disposition"])
    rows = list(csv.DictReader(io.StringIO(body(response))))
    assert [(r["fqdn"], r["owner"], r["status"]) for r in rows] == [
        (DELTA, "mallory", "valid"),
        (GAMMA, "mallory", "expired"),
    ]
    assert rows[1]["serial"] == world.serial(GAMMA)


def test_json_export(world: World, erin: Client) -> None:
    response = erin.get(reverse("audit:export-json"), {"expiring_within": "30"})

    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "application/json"
    records = json.loads(body(response))
    assert [r["fqdn"] for r in records] == [ALPHA]
    assert records[0]["owner"] == "alice"
    assert records[0]["status"] == "valid"


def test_export_everything(ca: CertificateAuthority, owner: Any, admin: Any, erin: Client) -> None:
    bulk_certificates(ca, owner, admin, 130)

    assert len(json.loads(body(erin.get(reverse("audit:export-json"))))) == 130
    assert len(list(csv.reader(io.StringIO(body(erin.get(reverse("audit:export-csv"))))))) == 131


@pytest.mark.parametrize("name", ["export-csv", "export-json"])
def test_exports_refuse_bad_filters_with_400(world: World, erin: Client, name: str) -> None:
    response = erin.get(reverse(f"audit:{name}"), {"issued_from": "not-a-date", "sort": "x"})

    assert response.status_code == 400
    assert set(json.loads(response.content)["errors"]) == {"issued_from", "sort"}


# --- the certificate page --------------------------------------------------------------------


def test_certificate_page_shows_the_chain_of_custody(
    ca: CertificateAuthority, owner: Any, admin: Any, second_admin: Any, erin: Client
) -> None:
    issue(admin, second_admin, "www.example.com", kind="server", networks=("10.1.1.0/24",), address="192.0.34.72")
    peer, _ = issue(owner, second_admin, "client.example.com", networks=("10.10.10.0/24",))
    assert bundle_render(peer_id=peer.pk).bundle is not None
    bundle_download(peer_id=peer.pk, user=owner, address="192.0.2.7", via="page")
    assert BundleDownload.objects.count() == 1
    certificate = Certificate.objects.get(fqdn="client.example.com")
    revoked_at = timezone.now()
    Certificate.objects.filter(pk=certificate.pk).update(
        revoked_at=revoked_at, revocation_reason="keyCompromise", revoked_by="user:carol", revocation_comment="lost"
    )
    revoked_event = audit_record(
        "certificate.revoked", actor="user:carol", target=f"certificate:{certificate.serial}",
        reason="keyCompromise", peer=peer.pk,
    )  # fmt: skip
    Crl.objects.create(
        ca=ca, number=3, this_update=revoked_at + timedelta(seconds=1), next_update=revoked_at + timedelta(days=1),
        der=b"x", entries=1, trigger="revocation",
    )  # fmt: skip

    response = erin.get(reverse("audit:certificate", args=[certificate.serial]))

    assert response.status_code == 200
    text = body(response)
    kinds = re.findall(r'data-kind="(\w+)"', text)
    assert [k for k in kinds if k != "event"] == [
        "registered", "approved", "requested", "issued", "download", "revoked", "crl",
    ]  # fmt: skip
    assert "approved by dave" in text
    assert "bundle v1 downloaded via peer page" in text
    assert "from 192.0.2.7" in text
    assert "revoked: key compromise" in text
    assert "first listed on CRL #3" in text
    assert "First listed on CRL #3" in text  # the banner
    assert f"#{revoked_event.seq}" in text
    assert f'href="{reverse("enrollment:detail", args=[peer.pk])}"' in text  # the peer page
    assert 'id="owner">alice<' in text
    assert "no audit event" in text  # the CRL has no crl.published event in this test
    # the peer page the link leads to is open to the auditor
    assert erin.get(reverse("enrollment:detail", args=[peer.pk])).status_code == 200


def test_certificate_page_accepts_openssl_spelling(world: World, erin: Client) -> None:
    serial = world.serial(DELTA)
    colons = ":".join(re.findall("..", serial.zfill(len(serial) + len(serial) % 2))).upper()

    assert erin.get(reverse("audit:certificate", args=[colons])).status_code == 200


@pytest.mark.parametrize("serial", ["0", "deadbeef", "not-hex", "ZZ"])
def test_unknown_certificate_is_404(world: World, erin: Client, serial: str) -> None:
    assert erin.get(reverse("audit:certificate", args=[serial])).status_code == 404


def test_certificate_page_queries_are_bounded(world: World, erin: Client, django_assert_max_num_queries: Any) -> None:
    with django_assert_max_num_queries(16):
        assert erin.get(reverse("audit:certificate", args=[world.serial(BETA)])).status_code == 200


# --- the dashboard ---------------------------------------------------------------------------


def test_dashboard_counts_and_charts(world: World, erin: Client) -> None:
    response = erin.get(reverse("audit:dashboard"))

    text = body(response)
    assert 'id="count-issued">4<' in text
    assert 'id="count-revoked">1<' in text
    assert 'id="count-expiring">1<' in text
    assert 'id="count-valid">2<' in text
    assert text.count("<svg") == 2
    assert text.count('class="bar"') == 26 + 12
    assert "<script" not in text
    assert "cdn" not in text.lower()
    # the expiry chart has alpha and delta in their months
    expiring = text[text.index('id="chart-expiring"') :]
    assert sum(int(v) for v in re.findall(r'data-value="(\d+)"', expiring)) >= 2
