"""bundle_render, staleness and the sweeper, against the real services and the fixture CA."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from authority.models import AuditEvent, CertificateAuthority
from bundles import selectors, services
from bundles.archive import BundleFile, build_zip
from bundles.models import Bundle, RenderClaim, SiteProfile
from bundles.renderers.bundle import finish
from bundles.renderers.readers.isakmpd_conf import parse_conf, structure_problems
from enrollment.models import Peer
from tests.bundles.conftest import issue, render

pytestmark = pytest.mark.django_db

CLIENT_PATHS = {
    "README.txt",
    "install.sh",
    "isakmpd/isakmpd.conf",
    "isakmpd/isakmpd.policy",
    "isakmpd/ca/ca.crt",
    "isakmpd/certs/client.example.com.crt",
    "firewall/ipf.rules",
    "iked/iked.conf",
    "swanctl/swanctl.conf",
    "bin/ca-portal-refresh",
}


def _actions() -> list[str]:
    return list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))


def test_it_waits_for_a_gateway_before_rendering_clients(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    peer, _ = issue(owner, admin, "client.example.com", networks=("10.10.10.0/24",))

    outcome = services.bundle_render(peer_id=peer.pk)

    assert outcome.bundle is None
    assert "gateway" in outcome.reason
    assert selectors.stale_peer_ids() == []
    assert "have not set up the VPN gateway" in selectors.bundle_render_blocker(peer)


def test_it_renders_every_file_of_a_client_bundle(client_peer: Peer, ca: CertificateAuthority) -> None:
    bundle = render(client_peer)

    assert bundle.version == 1
    assert {e["path"] for e in bundle.files} == CLIENT_PATHS
    modes = {e["path"]: e["mode"] for e in bundle.files}
    assert modes["isakmpd/isakmpd.conf"] == modes["isakmpd/isakmpd.policy"] == modes["firewall/ipf.rules"] == 0o600
    assert modes["isakmpd/ca/ca.crt"] == modes["README.txt"] == 0o644
    assert modes["install.sh"] == 0o755
    assert bundle.text_of("isakmpd/ca/ca.crt") == ca.certificate_pem
    assert bundle.text_of("isakmpd/certs/client.example.com.crt") == client_peer.certificate_request.certificate.pem
    conf = parse_conf(bundle.text_of("isakmpd/isakmpd.conf") or "")
    assert "192.0.34.72" in (bundle.text_of("isakmpd/isakmpd.conf") or "")
    assert not conf.problems
    assert structure_problems(conf) == []
    files = [BundleFile(e["path"], e["text"].encode(), e["mode"]) for e in bundle.files]
    assert bundle.sha256 == hashlib.sha256(build_zip("client.example.com", finish(files))).hexdigest()
    assert "bundle.rendered" in _actions()


def test_it_makes_no_new_version_when_nothing_changed(client_peer: Peer) -> None:
    first = render(client_peer)

    again = services.bundle_render(peer_id=client_peer.pk)

    assert again.created is False
    assert again.bundle is not None
    assert again.bundle.pk == first.pk
    assert Bundle.objects.filter(peer=client_peer).count() == 1
    assert _actions().count("bundle.rendered") == 1


def test_a_suite_change_makes_every_bundle_stale_and_a_new_version(
    client_peer: Peer, gateway: Peer, admin: Any
) -> None:
    render(gateway)
    render(client_peer)
    assert selectors.stale_peer_ids() == []

    services.profile_update(actor=admin, suite="aes256-sha384-ecp384")

    assert set(selectors.stale_peer_ids()) == {gateway.pk, client_peer.pk}
    bundle = render(client_peer)
    assert bundle.version == 2
    assert "AES-256-SHA2-384-GRP20-RSA_SIG" in (bundle.text_of("isakmpd/isakmpd.conf") or "")
    event = AuditEvent.objects.filter(action="bundle.rendered").order_by("-seq").first()
    assert event is not None
    assert "isakmpd/isakmpd.conf" in event.data["changed"]
    assert "isakmpd/ca/ca.crt" not in event.data["changed"]


def test_a_newly_issued_peer_makes_the_gateway_stale_and_first_in_line(
    client_peer: Peer, gateway: Peer, owner: Any, admin: Any
) -> None:
    render(gateway)
    render(client_peer)
    laptop, _ = issue(owner, admin, "laptop.example.com")

    stale = selectors.stale_peer_ids()

    assert stale == [gateway.pk, laptop.pk]
    bundle = render(gateway)
    assert bundle.version == 2
    assert '"laptop.example.com"' in (bundle.text_of("isakmpd/isakmpd.policy") or "")


def test_old_versions_nobody_downloaded_are_dropped_and_the_audit_keeps_them(
    client_peer: Peer, gateway: Peer, admin: Any
) -> None:
    """Each gateway version holds every issued client; unpruned they grow with the square of the site."""
    suites = [selectors.profile_get().suite, "aes256-sha384-ecp384"]
    render(gateway)
    render(client_peer)
    for version in range(2, 10):
        if version == 3:  # version 2 is what an admin installed on the gateway
            services.bundle_download(peer_id=gateway.pk, user=admin, address="192.0.2.9", via="page")
        services.profile_update(actor=admin, suite=suites[(version + 1) % 2])  # alternate: a change each time
        assert render(gateway).version == version

    kept = sorted(Bundle.objects.filter(peer=gateway).values_list("version", flat=True))
    assert kept == [2, *range(10 - services.KEEP_VERSIONS, 10)]
    rendered = AuditEvent.objects.filter(action="bundle.rendered", target=f"peer:{gateway.pk}")
    assert sorted(e.data["version"] for e in rendered) == list(range(1, 10))
    assert [b.version for b in Bundle.objects.filter(peer=client_peer)] == [1]  # other peers untouched


def test_the_gateway_needs_new_files_until_an_admin_downloads_them(
    client_peer: Peer, gateway: Peer, admin: Any
) -> None:
    from bundles.gateway_selectors import gateway_state

    render(gateway)
    profile = selectors.profile_get()
    assert gateway_state(profile, gateway).needs_update

    services.bundle_download(peer_id=gateway.pk, user=admin, address="192.0.2.9", via="page")

    assert not gateway_state(profile, gateway).needs_update


def test_the_sweeper_queues_each_stale_peer_once_while_it_waits(
    client_peer: Peer, gateway: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[list[int]] = []
    monkeypatch.setattr("bundles.services.sweeper._enqueue_batch", lambda peer_ids: sent.append(list(peer_ids)) or True)

    first = services.bundles_render_stale()
    second = services.bundles_render_stale()

    assert first == 2
    assert second == 0
    assert sent == [[gateway.pk], [client_peer.pk]]  # the gateway alone, then the clients in batches
    render(client_peer)  # a started render clears its claim
    assert RenderClaim.objects.get(peer_id=client_peer.pk).queued_at is None


def test_the_sweeper_clears_its_wakeup_before_it_looks(client_peer: Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A change committed while a sweep is queued needs no message of its own; one committed
    after the sweep started looking does (the flag is clear again)."""
    from authority.models import TaskWakeup

    sent: list[str] = []
    monkeypatch.setattr("ca_portal.celery.app.send_task", lambda name, **kw: sent.append(name))
    monkeypatch.setattr("bundles.services.sweeper._enqueue_batch", lambda peer_ids: True)
    services.bundles_sweep_soon()
    services.bundles_sweep_soon()
    assert sent == ["bundles.bundles_render_stale"]

    services.bundles_render_stale()

    assert not TaskWakeup.objects.get(name="bundles.bundles_render_stale").pending
    services.bundles_sweep_soon()
    assert sent == ["bundles.bundles_render_stale"] * 2


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"ext_if": "em0; pass all"}, "ext_if", "interface name"),
        ({"int_if": "em0"}, "int_if", "must differ"),
        ({"suite": "legacy-3des-sha1-modp1024"}, "suite", "legacy switch"),
        ({"suite": "des-md5"}, "suite", "unknown crypto suite"),
        (
            {"services": [{"name": "pass", "address": "10.1.1.10", "protocol": "tcp", "ports": [80]}]},
            "services",
            "pf keyword",
        ),
        (
            {"services": [{"name": "web", "address": "10.1.1.10\n", "protocol": "tcp", "ports": [80]}]},
            "services",
            "IPv4",
        ),
        (
            {"services": [{"name": "web", "address": "10.1.1.10", "protocol": "icmp", "ports": [80]}]},
            "services",
            "protocol must be",
        ),
        (
            {"services": [{"name": "web", "address": "10.1.1.10", "protocol": "tcp", "ports": [0]}]},
            "services",
            "1 to 65535",
        ),
        ({"admin_hosts": ["10.1.1.100", "host.example.com"]}, "admin_hosts", "IPv4"),
    ],
)
def test_it_refuses_bad_profile_values_and_changes_nothing(
    admin: Any, changes: dict[str, Any], field: str, message: str
) -> None:
    before = selectors.profile_get()

    with pytest.raises(services.BundleError, match=message) as refused:
        services.profile_update(actor=admin, **changes)

    assert refused.value.field == field
    after = SiteProfile.objects.get(pk=1)
    assert after.generation == before.generation
    assert (after.ext_if, after.suite, after.services) == (before.ext_if, before.suite, before.services)
    assert "site_profile.updated" not in _actions()


def test_the_legacy_suite_needs_the_switch_and_marks_every_file(client_peer: Peer, admin: Any) -> None:
    services.profile_update(actor=admin, legacy_allowed=True, suite="legacy-3des-sha1-modp1024")

    bundle = render(client_peer)

    assert bundle.legacy
    for path in ("isakmpd/isakmpd.conf", "isakmpd/isakmpd.policy", "iked/iked.conf", "swanctl/swanctl.conf"):
        assert "legacy" in (bundle.text_of(path) or "").lower(), path


def test_an_unchanged_profile_save_is_not_an_event(admin: Any) -> None:
    profile = selectors.profile_get()

    services.profile_update(actor=admin, suite=profile.suite, ext_if=profile.ext_if)

    assert SiteProfile.objects.get(pk=1).generation == profile.generation
    assert "site_profile.updated" not in _actions()


def test_a_site_overrides_a_config_template(client_peer: Peer, settings: Any, tmp_path: Any) -> None:
    (tmp_path / "ipf").mkdir()
    builtin = (settings.BASE_DIR / "templates" / "configs" / "ipf" / "ipf.rules.j2").read_text()
    (tmp_path / "ipf" / "ipf.rules.j2").write_text("# site override for {{ peer.fqdn }}\n" + builtin)
    settings.CONFIG_TEMPLATE_OVERRIDES = tmp_path

    bundle = render(client_peer)

    rules = bundle.text_of("firewall/ipf.rules") or ""
    assert rules.startswith("# site override for client.example.com\n")
    assert "isakmpd/isakmpd.conf" in {e["path"] for e in bundle.files}  # the other templates are the built-in ones


def test_an_override_that_names_an_unknown_variable_renders_nothing(
    client_peer: Peer, settings: Any, tmp_path: Any
) -> None:
    (tmp_path / "ipf").mkdir()
    (tmp_path / "ipf" / "ipf.rules.j2").write_text("pass in quick on {{ no_such_variable }} all\n")
    settings.CONFIG_TEMPLATE_OVERRIDES = tmp_path

    outcome = services.bundle_render(peer_id=client_peer.pk)

    assert outcome.bundle is None
    assert "no_such_variable" in outcome.reason
    assert not Bundle.objects.exists()


def test_a_batch_renders_every_peer_it_names_with_one_read_of_the_site(
    client_peer: Peer, gateway: Peer, owner: Any, admin: Any, django_assert_max_num_queries: Any
) -> None:
    others = [issue(owner, admin, f"host{i}.example.com")[0] for i in range(4)]
    ids = [client_peer.pk, *(p.pk for p in others)]
    # The statements do not grow with the batch: one lock of the peers, one read of their latest
    # versions and of their portal keys, one insert of the new versions, one of their audit events.
    with CaptureQueriesContext(connection) as queries:
        services.bundles_render_batch(peer_ids=ids[:1])
    Bundle.objects.all().delete()

    with django_assert_max_num_queries(len(queries.captured_queries)):
        made = services.bundles_render_batch(peer_ids=ids)

    assert made == len(ids)
    assert set(Bundle.objects.values_list("peer_id", flat=True)) == set(ids)
    assert services.bundles_render_batch(peer_ids=ids) == 0  # nothing changed: no new versions
