"""A render failure of one peer never blocks another peer's bundle (issue 10 F1).

The failing peer is marked (``RenderFailure``: the reason on its page, its bundle page, the Gateway
page, the bundle API and in the audit log), the gateway's files leave out a client whose stored
values they cannot carry, the others render, and the sweeper backs off instead of retrying the
failing peer at every sweep.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from authority.models import AuditEvent
from bundles import selectors, services
from bundles.models import Bundle, RenderFailure, SiteProfile
from bundles.renderers import engine
from bundles.renderers.bundle import render_files
from bundles.renderers.readers.keynote import read_policy
from enrollment.models import Peer
from tests.api.conftest import token_client
from tests.bundles.conftest import issue, render
from tests.conftest import login

pytestmark = pytest.mark.django_db

BAD = ["::/0"]  # what registration refuses today, as a row written before (or by a bug) holds it


def _remote_ids(bundle: Bundle) -> set[str]:
    """The FQDNs in the gateway's KeyNote remote_id list, read back as libkeynote reads it."""
    policy = read_policy(bundle.text_of("isakmpd/isakmpd.policy") or "")
    assert policy.errors == []
    (assertion,) = policy.assertions
    tokens = assertion.tokens("Conditions")
    return {
        tokens[i + 2].value
        for i in range(len(tokens) - 2)
        if (tokens[i].kind, tokens[i].value, tokens[i + 1].kind) == ("VARIABLE", "remote_id", "==")
    }


def _latest(peer: Peer) -> Bundle | None:
    return Bundle.objects.filter(peer=peer).order_by("-version").first()


def _failed_events(peer: Peer) -> list[dict[str, Any]]:
    events = AuditEvent.objects.filter(action="bundle.render_failed", target=f"peer:{peer.pk}").order_by("seq")
    return [event.data for event in events]


def _page(user: Any, url: str) -> str:
    client = Client()
    login(client, user)
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def site(gateway: Peer, client_peer: Peer, owner: Any, admin: Any) -> dict[str, Peer]:
    """The gateway and client.example.com rendered and installed; then a laptop and a client gateway
    issued, and the latter's networks overwritten in the database with a value no file can carry."""
    render(gateway)
    render(client_peer)
    services.bundle_download(peer_id=gateway.pk, user=admin, address="192.0.2.9", via="page")
    laptop, _ = issue(owner, admin, "laptop.example.com")
    bad, _ = issue(owner, admin, "bad.example.com", networks=("10.20.0.0/24",))
    Peer.objects.filter(pk=bad.pk).update(networks=BAD)  # bypasses registration's rules
    return {"gateway": gateway, "client": client_peer, "laptop": laptop, "bad": bad}


def _run_sweeper(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The sweeper, with each queued batch rendered at once (as the render worker would)."""
    sent: list[list[int]] = []

    def enqueue(peer_ids: list[int]) -> bool:
        sent.append(list(peer_ids))
        services.bundles_render_batch(peer_ids=list(peer_ids))
        return True

    monkeypatch.setattr("bundles.services.sweeper._enqueue_batch", enqueue)
    services.bundles_render_stale()
    return sent


@pytest.mark.parametrize("path", ["batch", "sweeper"])
def test_a_client_the_renderers_refuse_does_not_stop_the_others_or_the_gateway(
    site: dict[str, Peer], admin: Any, owner: Any, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway, good, laptop, bad = site["gateway"], site["client"], site["laptop"], site["bad"]

    if path == "batch":
        services.bundles_render_batch(peer_ids=[gateway.pk])
        services.bundles_render_batch(peer_ids=[good.pk, laptop.pk, bad.pk])
    else:
        _run_sweeper(monkeypatch)

    # Every other peer's bundle is made and current; the gateway's new version names every other
    # issued client and not the bad one.
    assert _latest(laptop) is not None
    assert _latest(bad) is None
    assert selectors.stale_peer_ids() == [bad.pk]
    newest = _latest(gateway)
    assert newest is not None
    assert newest.version == 2
    assert _remote_ids(newest) == {"client.example.com", "laptop.example.com"}
    assert "bad.example.com" not in (newest.text_of("iked/iked.conf") or "")
    assert "bad.example.com" not in (newest.text_of("swanctl/swanctl.conf") or "")
    # The bad peer is marked, with the reason, once in the audit log.
    failure = RenderFailure.objects.get(peer=bad)
    assert "::/0" in failure.reason
    assert "IPv6" in failure.reason
    assert failure.left_out
    assert failure.attempts == 1  # its own render; the gateway's mark is no attempt of it
    assert _failed_events(bad) == [{"reason": failure.reason, "left_out": True}]
    assert set(RenderFailure.objects.values_list("peer_id", flat=True)) == {bad.pk}

    # The Gateway page names it and never says the files are current while a client is left out,
    # not even once an admin has downloaded the newest version.
    services.bundle_download(peer_id=gateway.pk, user=admin, address="192.0.2.9", via="page")
    html = _page(admin, "/bundles/gateway/")
    assert "files are current" not in html
    assert 'id="gateway-incomplete"' in html
    assert "leave out 1 issued client" in html
    assert f'id="failure-{bad.pk}"' in html
    assert "bad.example.com" in html
    assert "IPv6 is not supported yet" in html
    assert "left out of the gateway's files" in html
    # the failing peer is not "waiting to be made"
    assert re.search(r'<dd id="stale-count"[^>]*>0</dd>', html)

    # Its own pages and the API say why instead of "not ready yet".
    message = f"Bundle could not be made: {failure.reason}"
    assert 'id="render-failure"' in _page(owner, f"/peers/{bad.pk}/")
    assert "Bundle could not be made: " in _page(owner, f"/peers/{bad.pk}/")
    bundle_page = _page(owner, f"/bundles/peer/{bad.pk}/")
    assert "Bundle could not be made: " in bundle_page
    assert "not ready" not in bundle_page
    response = token_client(owner).get(f"/api/v1/peers/{bad.pk}/bundle")
    assert response.status_code == 409
    assert response.json()["errors"]["__all__"] == [message]
    assert 'id="render-failure"' not in _page(owner, f"/peers/{laptop.pk}/")


def test_the_sweeper_backs_off_a_failing_peer_until_an_input_changes_or_its_time_comes(
    site: dict[str, Peer], admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = site["bad"]
    _run_sweeper(monkeypatch)
    first = RenderFailure.objects.get(peer=bad)

    assert _run_sweeper(monkeypatch) == []  # stale, but resting: not queued again at every sweep
    assert RenderFailure.objects.get(peer=bad).attempts == first.attempts

    RenderFailure.objects.filter(peer=bad).update(retry_at=timezone.now() - timedelta(seconds=1))
    assert _run_sweeper(monkeypatch) == [[bad.pk]]
    again = RenderFailure.objects.get(peer=bad)
    assert again.attempts == first.attempts + 1
    assert again.retry_at - again.at == services.render.retry_delay(again.attempts) > services.render.RETRY_FIRST
    assert len(_failed_events(bad)) == 1  # the same reason again is not a new event

    services.profile_update(actor=admin, suite="aes256-sha384-ecp384")  # an input changed: every peer, now
    sent = _run_sweeper(monkeypatch)
    assert bad.pk in [peer_id for batch in sent for peer_id in batch]
    assert RenderFailure.objects.get(peer=bad).attempts == first.attempts + 2
    assert services.render.retry_delay(50) == services.render.RETRY_MAX


def test_a_fixed_row_renders_and_clears_the_failure(site: dict[str, Peer], monkeypatch: pytest.MonkeyPatch) -> None:
    gateway, bad = site["gateway"], site["bad"]
    _run_sweeper(monkeypatch)
    Peer.objects.filter(pk=bad.pk).update(networks=["10.20.0.0/24"])

    _run_sweeper(monkeypatch)  # the gateway's inputs changed (its clients): it is not resting

    assert not RenderFailure.objects.exists()
    assert _latest(bad) is not None
    newest = _latest(gateway)
    assert newest is not None
    assert "bad.example.com" in _remote_ids(newest)
    recovered = AuditEvent.objects.filter(action="bundle.render_recovered", target=f"peer:{bad.pk}")
    assert recovered.count() == 1
    assert selectors.stale_peer_ids() == []


def test_a_revoked_bad_client_is_no_longer_shown(
    site: dict[str, Peer], admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from enrollment.services import peer_revoke

    gateway, bad = site["gateway"], site["bad"]
    _run_sweeper(monkeypatch)
    peer_revoke(peer_id=bad.pk, user=admin, reason="keyCompromise")
    _run_sweeper(monkeypatch)

    assert not RenderFailure.objects.filter(peer=bad).exists()  # the gateway's render cleared its mark
    services.bundle_download(peer_id=gateway.pk, user=admin, address="192.0.2.9", via="page")
    html = _page(admin, "/bundles/gateway/")
    assert "files are current" in html
    assert 'id="render-failures"' not in html


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (engine.RenderError("ipf/ipf.rules.j2: 'x' is undefined"), "ipf/ipf.rules.j2: 'x' is undefined"),
        (engine.RenderError("line\nbreak " + "x" * 1000), None),
        (KeyError("a bug"), services.render.INTERNAL_ERROR),
    ],
    ids=["render-error", "long-reason", "bug"],
)
def test_a_render_that_raises_for_one_peer_leaves_every_other_bundle_current(
    site: dict[str, Peer], monkeypatch: pytest.MonkeyPatch, error: Exception, reason: str | None
) -> None:
    gateway, good, laptop, bad = site["gateway"], site["client"], site["laptop"], site["bad"]
    Peer.objects.filter(pk=bad.pk).update(networks=["10.20.0.0/24"])

    def flaky(env: Any, site_: Any, peer: Any) -> Any:
        if peer.fqdn == "laptop.example.com":
            raise error
        return render_files(env, site_, peer)

    monkeypatch.setattr("bundles.services.render.render_files", flaky)
    _run_sweeper(monkeypatch)

    assert selectors.stale_peer_ids() == [laptop.pk]
    for peer in (gateway, good, bad):
        assert _latest(peer) is not None
    assert _latest(laptop) is None
    failure = RenderFailure.objects.get()
    assert failure.peer_id == laptop.pk
    assert not failure.left_out
    if reason is not None:
        assert failure.reason == reason
    else:
        assert len(failure.reason) == 300
        assert "\n" not in failure.reason
        assert failure.reason.endswith("…")
    assert _failed_events(laptop) == [{"reason": failure.reason, "left_out": False}]
    assert "laptop.example.com" in _remote_ids(_latest(gateway))  # type: ignore[arg-type]


def test_a_gateway_that_fails_is_marked_and_retried_when_its_clients_change(
    site: dict[str, Peer], admin: Any, owner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway, laptop = site["gateway"], site["laptop"]
    Peer.objects.filter(pk=site["bad"].pk).update(networks=["10.20.0.0/24"])

    def broken_gateway(env: Any, site_: Any, peer: Any) -> Any:
        if peer.is_gateway:
            raise engine.RenderError("pf/pf.conf.j2: 'nope' is undefined")
        return render_files(env, site_, peer)

    monkeypatch.setattr("bundles.services.render.render_files", broken_gateway)
    _run_sweeper(monkeypatch)

    assert _latest(gateway).version == 1  # type: ignore[union-attr]
    assert _latest(laptop) is not None  # the clients render without the gateway
    assert RenderFailure.objects.get(peer=gateway).reason == "pf/pf.conf.j2: 'nope' is undefined"
    html = _page(admin, "/bundles/gateway/")
    assert "files are current" not in html
    assert "The gateway's files could not be made: pf/pf.conf.j2" in html
    assert _run_sweeper(monkeypatch) == []  # resting

    issue(owner, admin, "new.example.com")  # its issued clients changed: the gateway is tried again
    sent = _run_sweeper(monkeypatch)
    assert sent[0] == [gateway.pk]
    assert RenderFailure.objects.get(peer=gateway).attempts == 2

    monkeypatch.undo()
    services.bundles_render_batch(peer_ids=[gateway.pk])
    assert not RenderFailure.objects.filter(peer=gateway).exists()
    assert _remote_ids(_latest(gateway)) >= {"laptop.example.com", "new.example.com"}  # type: ignore[arg-type]


def test_a_site_wide_value_the_renderers_refuse_marks_every_peer_of_the_batch(site: dict[str, Peer]) -> None:
    good, laptop = site["client"], site["laptop"]
    SiteProfile.objects.filter(pk=1).update(ext_if="em0; pass all")  # not through the profile form

    services.bundles_render_batch(peer_ids=[good.pk, laptop.pk])

    reasons = dict(RenderFailure.objects.values_list("peer_id", "reason"))
    assert set(reasons) == {good.pk, laptop.pk}
    assert all("interface name" in reason for reason in reasons.values())
    assert _latest(good).version == 1  # type: ignore[union-attr]


def test_a_batch_with_a_failing_peer_costs_a_few_statements_more_not_one_per_peer(
    site: dict[str, Peer], owner: Any, admin: Any, django_assert_max_num_queries: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    others = [issue(owner, admin, f"host{i}.example.com")[0] for i in range(4)]
    bad = site["bad"]
    with CaptureQueriesContext(connection) as queries:
        services.bundles_render_batch(peer_ids=[others[0].pk])
    Bundle.objects.filter(peer__in=others).delete()

    with django_assert_max_num_queries(len(queries.captured_queries) + 2):
        made = services.bundles_render_batch(peer_ids=[bad.pk, *(p.pk for p in others)])

    assert made == len(others)
    assert RenderFailure.objects.filter(peer=bad).exists()
