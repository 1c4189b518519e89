"""/crl.pem and /crl.der: validators and conditional requests, so thousands of polling peers cost nothing.

(That bin/ca-portal-refresh sends the same entity tag is proven in tests/bundles/test_refresh.py.)
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from django.utils.http import http_date

from authority.crl_policy import CrlPolicy, check_crl_policy
from authority.models import CertificateAuthority
from authority.revocation import crl_publish
from tests.conftest import login

pytestmark = pytest.mark.django_db


def test_the_crl_carries_validators_and_a_cache_lifetime(ca: CertificateAuthority) -> None:
    crl = crl_publish()

    der = Client().get("/crl.der")
    pem = Client().get("/crl.pem")

    assert der.status_code == pem.status_code == 200
    fingerprint = ca.fingerprint_sha256.replace(":", "").lower()[:16]
    assert der["ETag"] == f'"{fingerprint}-1-der"'
    assert pem["ETag"] == f'"{fingerprint}-1-pem"'  # another representation, another strong tag
    assert der["Last-Modified"] == pem["Last-Modified"] == http_date(crl.this_update.timestamp())
    assert der["Cache-Control"] == "public, max-age=3600"
    assert der["X-CRL-Number"] == "1"


@pytest.mark.parametrize("path", ["/crl.der", "/crl.pem"])
def test_a_conditional_request_is_a_304_for_one_query(ca: CertificateAuthority, path: str) -> None:
    crl_publish()
    first = Client().get(path)

    queries: list[str] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):  # (the test client's request_started empties queries_log)
        by_tag = Client().get(path, headers={"If-None-Match": first["ETag"]})
    by_date = Client().get(path, headers={"If-Modified-Since": first["Last-Modified"]})
    listed = Client().get(path, headers={"If-None-Match": f'"other", {first["ETag"]}'})

    assert by_tag.status_code == by_date.status_code == listed.status_code == 304
    assert by_tag.content == b""
    assert len(queries) == 1, queries
    for name in ("ETag", "Last-Modified", "Cache-Control", "X-CRL-Number"):
        assert by_tag[name] == first[name]


def test_a_new_crl_is_served_whole_to_a_peer_that_holds_the_old_one(ca: CertificateAuthority) -> None:
    crl_publish()
    old = Client().get("/crl.der")
    newer = crl_publish(now=timezone.now() + timedelta(minutes=1))

    response = Client().get(
        "/crl.der", headers={"If-None-Match": old["ETag"], "If-Modified-Since": old["Last-Modified"]}
    )

    assert response.status_code == 200
    assert bytes(response.content) == bytes(newer.der)
    assert response["ETag"] != old["ETag"]
    assert response["X-CRL-Number"] == "2"


def test_no_crl_is_still_a_404(ca: CertificateAuthority) -> None:
    assert Client().get("/crl.der", headers={"If-None-Match": "*"}).status_code == 404


# --- the lifetime policy ------------------------------------------------------------------------


def test_the_default_policy_keeps_peers_up_for_four_weeks_without_the_portal(settings: Any) -> None:
    policy = CrlPolicy(timedelta(days=30), timedelta(hours=24), timedelta(hours=6))

    assert policy.offline_tolerance == timedelta(days=28, hours=18)
    assert policy.warnings() == []
    assert check_crl_policy() == []


def test_a_validity_shorter_than_two_refreshes_is_warned_about(settings: Any) -> None:
    settings.CRL_VALIDITY_DAYS = 1
    settings.CRL_REFRESH_HOURS = 13

    found = check_crl_policy()

    assert [w.id for w in found] == ["authority.W001"]
    assert "shorter than twice" in found[0].msg


def test_a_short_tolerance_is_warned_about(settings: Any) -> None:
    settings.CRL_VALIDITY_DAYS = 2
    settings.CRL_RENEW_HOURS = 24
    settings.CRL_REFRESH_HOURS = 6

    found = check_crl_policy()

    assert len(found) == 1
    assert "18 h refuses every tunnel" in found[0].msg


def test_the_ca_page_states_the_trade_off_and_the_warning(ca: CertificateAuthority, admin: Any, settings: Any) -> None:
    client = Client()
    login(client, admin)
    crl_publish()

    page = client.get("/ca/").content.decode()
    assert "valid for 30 days and replaced after 1 day" in page
    assert "keeps working for 28 days 18 h" in page
    assert "crl-policy-warning" not in page

    settings.CRL_VALIDITY_DAYS = 1
    settings.CRL_REFRESH_HOURS = 13
    page = client.get("/ca/").content.decode()
    assert "crl-policy-warning" in page
    assert "shorter than twice" in page
