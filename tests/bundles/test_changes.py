"""Owners are told when their bundle changed since their last download (issue 10, item 7).

As CA admins see "The gateway needs new files", an owner sees on My peers, on the peer page and on the
bundle page that a newer version waits, and why: a new CRL, a new suite, a new certificate. One query
per page, whatever the number of peers.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from authority.revocation import crl_publish
from bundles import services
from bundles.changes import bundle_news
from core.roles import is_ca_admin
from enrollment.models import Peer
from tests.bundles.conftest import issue, render
from tests.conftest import login

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    login(client, user)
    return client


def _download(peer: Peer, user: Any) -> None:
    services.bundle_download(peer_id=peer.pk, user=user, address=None, via="page")


def test_a_new_crl_after_the_download_is_news_on_my_peers_and_the_peer_page(client_peer: Peer, owner: Any) -> None:
    crl_publish()
    render(client_peer)
    _download(client_peer, owner)
    client = _client(owner)
    assert 'id="bundle-news"' not in client.get("/peers/").content.decode()

    crl_publish(trigger="revocation")  # the CA publishes a new CRL: every bundle ships it
    render(client_peer)

    mine = client.get("/peers/").content.decode()
    page = client.get(f"/peers/{client_peer.pk}/").content.decode()
    bundle = client.get(f"/bundles/peer/{client_peer.pk}/").content.decode()
    assert 'id="bundle-news"' in mine
    assert "client.example.com</code></a>: version 2 (a new CRL); you downloaded version 1." in mine
    assert 'id="bundle-news"' in page
    assert "version 2 brings a new CRL (you downloaded version 1)" in page
    assert 'id="bundle-news-here"' in bundle

    _download(client_peer, owner)

    assert 'id="bundle-news"' not in client.get("/peers/").content.decode()
    assert 'id="bundle-news"' not in client.get(f"/peers/{client_peer.pk}/").content.decode()


def test_a_new_suite_is_named_as_such(client_peer: Peer, owner: Any, admin: Any) -> None:
    render(client_peer)
    _download(client_peer, owner)
    services.profile_update(actor=admin, suite="aes256-sha384-ecp384")
    render(client_peer)

    news = bundle_news(owner, [client_peer])[client_peer.pk]

    assert (news.latest, news.downloaded, news.reasons) == (2, 1, ("a new suite",))
    assert news.why == "a new suite"


def test_nothing_is_news_before_the_first_download_or_to_anyone_else(
    client_peer: Peer, owner: Any, admin: Any, other_user: Any
) -> None:
    render(client_peer)
    services.profile_update(actor=admin, suite="aes256-sha384-ecp384")
    render(client_peer)
    assert bundle_news(owner, [client_peer]) == {}  # never downloaded: nothing to compare with

    _download(client_peer, owner)
    services.profile_update(actor=admin, suite="aes256-sha256-ecp256")
    render(client_peer)

    assert set(bundle_news(owner, [client_peer])) == {client_peer.pk}
    assert bundle_news(admin, [client_peer]) == {}  # admins do not take a client's bundle
    assert bundle_news(other_user, [client_peer]) == {}


def test_the_delivered_key_leaving_the_readme_is_no_news(gateway: Peer, owner: Any, admin: Any) -> None:
    laptop, _ = issue(owner, admin, "laptop.example.com", portal_key=True)
    render(laptop)
    _download(laptop, owner)  # takes the key; the README and SHA256SUMS stop listing it

    second = render(laptop)

    assert second.version == 2
    assert bundle_news(owner, [laptop]) == {}


def test_admins_are_told_about_the_gateway_they_downloaded(gateway: Peer, owner: Any, admin: Any) -> None:
    render(gateway)
    _download(gateway, admin)
    issue(owner, admin, "new-client.example.com")  # the gateway's policy must name it

    render(gateway)

    news = bundle_news(admin, [gateway])[gateway.pk]
    assert news.reasons == ("a new list of issued peers",)


def test_it_is_one_query_for_any_number_of_peers(client_peer: Peer, owner: Any, admin: Any) -> None:
    peers = [client_peer]
    for name in ("two", "three", "four"):
        peer, _ = issue(owner, admin, f"{name}.example.com")
        peers.append(peer)
    crl_publish()
    for peer in peers:
        render(peer)
        _download(peer, owner)
    crl_publish(trigger="revocation")
    for peer in peers:
        render(peer)

    is_ca_admin(owner)  # as every page's context processor does: the roles are then cached on the user
    with CaptureQueriesContext(connection) as queries:
        news = bundle_news(owner, Peer.objects.filter(owner=owner))
    client = _client(owner)
    with CaptureQueriesContext(connection) as page:
        html = client.get("/peers/").content.decode()

    assert len(queries) == 1, [q["sql"][:200] for q in queries.captured_queries]
    assert set(news) == {peer.pk for peer in peers}
    assert {n.why for n in news.values()} == {"a new CRL"}
    assert html.count("(a new CRL); you downloaded version 1.") == 4
    about_bundles = [q["sql"] for q in page.captured_queries if '"bundles_bundle"' in q["sql"]]
    assert len(about_bundles) == 1, about_bundles  # My peers asks about bundles once, for all four
