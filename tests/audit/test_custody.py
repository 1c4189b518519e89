"""One certificate: found by its serial, its owner, and its chain of custody."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from audit import custody, selectors
from audit.selectors import InventoryFilters
from authority.audit import audit_record
from authority.models import AuditEvent, Certificate, CertificateAuthority, Crl
from bundles.services import bundle_download, bundle_render
from tests.audit.conftest import ALPHA, BETA, World
from tests.bundles.conftest import issue

pytestmark = pytest.mark.django_db


def test_timeline_has_the_whole_chain_of_custody(
    ca: CertificateAuthority, owner: Any, admin: Any, second_admin: Any
) -> None:
    issue(admin, second_admin, "www.example.com", kind="server", networks=("10.1.1.0/24",), address="192.0.34.72")
    peer, _ = issue(owner, second_admin, "client.example.com", networks=("10.10.10.0/24",))
    assert bundle_render(peer_id=peer.pk).bundle is not None
    bundle_download(peer_id=peer.pk, user=owner, address="192.0.2.7", via="page")
    certificate = Certificate.objects.get(fqdn="client.example.com")
    revoked_at = timezone.now()
    Certificate.objects.filter(pk=certificate.pk).update(
        revoked_at=revoked_at, revocation_reason="keyCompromise", revoked_by="user:carol"
    )
    audit_record(
        "certificate.revoked",
        actor="user:carol",
        target=f"certificate:{certificate.serial}",
        reason="keyCompromise",
        peer=peer.pk,
    )
    Crl.objects.create(
        ca=ca, number=6, this_update=revoked_at - timedelta(hours=1), next_update=revoked_at, der=b"x", entries=0,
        trigger="schedule",
    )  # fmt: skip
    crl = Crl.objects.create(
        ca=ca, number=7, this_update=revoked_at + timedelta(seconds=2), next_update=revoked_at + timedelta(days=1),
        der=b"x", entries=1, trigger="revocation",
    )  # fmt: skip
    Crl.objects.create(
        ca=ca, number=8, this_update=revoked_at + timedelta(hours=1), next_update=revoked_at + timedelta(days=2),
        der=b"x", entries=1, trigger="schedule",
    )  # fmt: skip
    published = audit_record("crl.published", actor="signer", target=f"ca:{ca.pk}", number=7, entries=1)

    loaded = custody.certificate_by_serial(certificate.serial.upper())
    assert loaded is not None
    timeline = custody.certificate_timeline(loaded)

    kinds = [e.kind for e in timeline.entries if e.kind != "event"]
    assert kinds == ["registered", "approved", "requested", "issued", "download", "revoked", "crl"]
    by_kind = {e.kind: e for e in timeline.entries}
    assert by_kind["registered"].actor == "alice"
    assert by_kind["approved"].what == "approved by dave"
    assert by_kind["approved"].actor == "dave"
    assert by_kind["issued"].actor == "signer"
    assert certificate.serial in by_kind["issued"].what
    assert by_kind["download"].actor == "alice"
    assert "192.0.2.7" in by_kind["download"].detail
    assert "bundle v1 downloaded via peer page" in by_kind["download"].what
    assert by_kind["revoked"].actor == "carol"
    assert "key compromise" in by_kind["revoked"].what
    assert by_kind["crl"].what == "first listed on CRL #7"
    assert by_kind["crl"].seq == published.seq
    assert timeline.crl is not None
    assert timeline.crl.pk == crl.pk
    # every state change is paired with the audit event that recorded it
    assert not [e for e in timeline.entries if e.missing_event]
    seqs = {e.kind: e.seq for e in timeline.entries}
    actions = dict(AuditEvent.objects.filter(seq__in=[s for s in seqs.values() if s]).values_list("seq", "action"))
    assert actions[seqs["approved"]] == "peer.approved"
    assert actions[seqs["download"]] == "bundle.downloaded"
    assert actions[seqs["revoked"]] == "certificate.revoked"
    # the other events about this peer are there too, and no event is shown twice
    others = [e.what for e in timeline.entries if e.kind == "event"]
    assert "bundle.rendered" in others
    assert "certificate.intent" in others
    shown = [e.seq for e in timeline.entries if e.seq is not None]
    assert len(shown) == len(set(shown))
    # oldest first
    assert [e.at for e in timeline.entries] == sorted(e.at for e in timeline.entries)


def test_timeline_flags_a_state_change_without_its_audit_event(world: World) -> None:
    certificate = custody.certificate_by_serial(world.serial(BETA))
    assert certificate is not None

    timeline = custody.certificate_timeline(certificate)

    revoked = [e for e in timeline.entries if e.kind == "revoked"]
    assert len(revoked) == 1
    assert revoked[0].missing_event
    assert timeline.crl is None
    assert not [e for e in timeline.entries if e.missing_event and e.kind != "revoked"]


def test_timeline_queries_are_bounded(world: World, django_assert_max_num_queries: Any) -> None:
    with django_assert_max_num_queries(5):
        certificate = custody.certificate_by_serial(world.serial(ALPHA))
        assert certificate is not None
        timeline = custody.certificate_timeline(certificate)
        assert custody.certificate_owner(certificate) == "alice"
    assert len(timeline.entries) >= 4


def test_certificate_by_serial_refuses_what_is_not_hex(world: World) -> None:
    assert custody.certificate_by_serial("zz") is None
    assert custody.certificate_by_serial("123") is None


def test_a_certificate_without_a_peer_belongs_to_whoever_requested_it(
    ca: CertificateAuthority, owner: Any, admin: Any, second_admin: Any
) -> None:
    from authority.services import certificate_issue, certificate_request_create
    from tests.bundles.conftest import ANY_CSR

    request = certificate_request_create(
        fqdn="cli.example.com", kind="client", csr_pem=ANY_CSR, validity_days=30, requested_by=owner,
        approved_by=second_admin, actor="cli:root", enqueue=False,
    )  # fmt: skip
    assert certificate_issue(request_id=request.pk) is not None
    issue(other := owner, admin, "peer.example.com")
    assert other == owner

    rows = list(selectors.inventory_iter(InventoryFilters(q="alice", sort="fqdn", direction="asc")))
    assert [(r.fqdn, r.owner, r.peer_id is None) for r in rows] == [
        ("cli.example.com", "alice", True),
        ("peer.example.com", "alice", False),
    ]
    certificate = custody.certificate_by_serial(Certificate.objects.get(fqdn="cli.example.com").serial)
    assert certificate is not None
    assert custody.certificate_owner(certificate) == "alice"
    timeline = custody.certificate_timeline(certificate)
    kinds = [e.kind for e in timeline.entries if e.kind != "event"]
    assert kinds == ["requested", "approved", "issued"]
    approved = next(e for e in timeline.entries if e.kind == "approved")
    assert approved.what == "approved by dave"
    assert not approved.missing_event  # no peer, so no peer.approved event is expected
    assert next(e for e in timeline.entries if e.kind == "requested").actor == "cli:root"
