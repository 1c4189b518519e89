"""Renewal: the renew service, automatic approval, superseding the old certificate and the reminders."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from authority.models import AuditEvent, Certificate, CertificateRequest
from authority.services import certificate_issue
from bundles.models import BundleDownload
from bundles.services import bundle_download
from core.env import renewal_reminder_days
from enrollment import selectors
from enrollment.models import Peer, PortalKey, RenewalReminder
from enrollment.selectors import policy_get
from enrollment.services import (
    AUTO_RENEWAL_ACTOR,
    EnrollmentError,
    Registration,
    peer_approve,
    peer_key_generate,
    peer_register,
    peer_reject,
    peer_renew,
    peer_revoke,
    policy_update,
    renewal_reminders_send,
    renewals_supersede,
)
from tests.bundles.conftest import ANY_CSR, issue, render
from tests.conftest import fixture_bytes

pytestmark = pytest.mark.django_db

FQDN = "laptop.example.com"


@pytest.fixture
def laptop(ca: Any, owner: Any, admin: Any) -> Peer:
    """alice's issued roaming laptop (tests that render its bundles ask for the `gateway` too)."""
    peer, _ = issue(owner, admin, FQDN)
    return peer


def _certificate(peer: Peer) -> Certificate:
    return Certificate.objects.get(request__peer=peer)


def _renew(peer: Peer, user: Any, csr: str | None = ANY_CSR) -> Registration:
    return peer_renew(peer_id=peer.pk, user=user, csr_pem=csr)


def _issued(renewal: Peer, approver: Any) -> Peer:
    """Approve (unless the policy did) and sign a renewal, as the signer would."""
    renewal.refresh_from_db()
    if renewal.decision == Peer.Decision.PENDING:
        renewal = peer_approve(peer_id=renewal.pk, approver=approver, actor=approver, enqueue=False)
    assert renewal.certificate_request is not None
    assert certificate_issue(request_id=renewal.certificate_request.pk) is not None
    renewal.refresh_from_db()
    assert renewal.status == "issued"
    return renewal


def _auto_renewals(admin: Any, *, domains: tuple[str, ...] = ()) -> None:
    policy_update(
        allowed_domains=list(domains),
        default_validity_days=365,
        allow_self_approval=False,
        auto_approve_renewals=True,
        actor=admin,
    )


def _actions() -> list[str]:
    return list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))


# --- peer_renew ---------------------------------------------------------------------------------


def test_it_renews_with_a_csr_through_the_approval_queue(laptop: Peer, owner: Any, second_admin: Any) -> None:
    old_serial = _certificate(laptop).serial

    registration = _renew(laptop, owner)

    renewal = registration.peer
    assert registration.key_passphrase == ""
    assert (renewal.fqdn, renewal.kind, renewal.networks, renewal.owner) == (FQDN, "client", [], owner)
    assert (renewal.renews_id, renewal.key_source, renewal.status) == (laptop.pk, "csr", "pending")
    event = AuditEvent.objects.get(action="peer.renewal_requested")
    assert (event.actor, event.target) == ("user:alice", f"peer:{renewal.pk}")
    assert event.data["renews"] == laptop.pk
    assert renewal in selectors.approval_queue()
    notes = selectors.issuance_preview(renewal, policy_get()).warnings
    assert any(note.startswith(f"renewal of {FQDN} (serial {old_serial}") for note in notes)
    assert not any("had a certificate before" in note for note in notes)

    issued = _issued(renewal, second_admin)

    assert issued.decided_by == second_admin
    laptop.refresh_from_db()
    assert (laptop.status, laptop.retired_at) == ("issued", None)  # both live until superseded
    assert issued.retired_at is None
    assert Certificate.objects.filter(fqdn=FQDN, revoked_at__isnull=True).count() == 2


def test_it_renews_with_a_portal_made_key(laptop: Peer, owner: Any, admin: Any) -> None:
    registration = _renew(laptop, owner, csr=None)

    renewal = registration.peer
    assert len(registration.key_passphrase) >= 24
    assert (renewal.key_source, renewal.progress) == ("portal", "making-key")
    assert PortalKey.objects.get(peer=renewal).handoff_passphrase == registration.key_passphrase
    assert registration.key_passphrase not in str(list(AuditEvent.objects.values_list("data", flat=True)))

    assert peer_key_generate(peer_id=renewal.pk)

    renewal.refresh_from_db()
    assert (renewal.key_ready, renewal.status) == (True, "pending")  # the policy does not approve renewals
    assert _issued(renewal, admin).status == "issued"


def test_a_second_renewal_while_one_is_live_is_refused(laptop: Peer, owner: Any, admin: Any) -> None:
    first = _renew(laptop, owner).peer

    with pytest.raises(EnrollmentError, match="already being renewed") as pending:
        _renew(laptop, owner)
    _issued(first, admin)
    with pytest.raises(EnrollmentError, match="already being renewed") as issued:
        _renew(laptop, owner, csr=None)

    assert pending.value.status == issued.value.status == 409
    assert Peer.objects.filter(renews=laptop).count() == 1


def test_a_rejected_or_failed_renewal_makes_way_for_a_new_one(laptop: Peer, owner: Any, admin: Any) -> None:
    rejected = _renew(laptop, owner).peer
    peer_reject(peer_id=rejected.pk, approver=admin, reason="use a new key", actor=admin)
    failed = _renew(laptop, owner).peer
    approved = peer_approve(peer_id=failed.pk, approver=admin, actor=admin, enqueue=False)
    CertificateRequest.objects.filter(pk=approved.certificate_request_id).update(
        status=CertificateRequest.Status.FAILED, failure_reason="the signer gave up"
    )

    third = _renew(laptop, owner).peer

    failed.refresh_from_db()
    assert failed.retired_at is not None
    assert third.status == "pending"
    assert AuditEvent.objects.filter(action="peer.retired", target=f"peer:{failed.pk}").exists()


@pytest.mark.parametrize(("persona", "status"), [("other_user", 404), ("admin", 404), ("auditor", 403)])
def test_only_the_owner_renews(laptop: Peer, persona: str, status: int, request: Any) -> None:
    with pytest.raises(EnrollmentError) as refused:
        _renew(laptop, request.getfixturevalue(persona))

    assert refused.value.status == status
    assert not Peer.objects.filter(renews=laptop).exists()


def test_it_renews_only_an_issued_live_certificate_before_it_expires(laptop: Peer, owner: Any) -> None:
    pending = peer_register(
        owner=owner, fqdn="new.example.com", kind="client", networks=[], address=None, csr_pem=ANY_CSR, actor=owner
    )
    expiry = _certificate(laptop).not_after

    with pytest.raises(EnrollmentError, match="only an issued certificate") as not_issued:
        _renew(pending, owner)
    with pytest.raises(EnrollmentError, match="renewals happen before expiry") as expired:
        peer_renew(peer_id=laptop.pk, user=owner, csr_pem=ANY_CSR, now=expiry + timedelta(seconds=1))
    peer_revoke(peer_id=laptop.pk, user=owner, reason="keyCompromise")
    with pytest.raises(EnrollmentError, match="revoked") as revoked:
        _renew(laptop, owner)

    assert not_issued.value.status == expired.value.status == revoked.value.status == 409
    assert not Peer.objects.filter(renews__isnull=False).exists()


def test_it_vets_the_new_csr_for_the_fqdn(laptop: Peer, owner: Any) -> None:
    with pytest.raises(EnrollmentError) as refused:
        _renew(laptop, owner, csr=fixture_bytes("client-rsa2048.csr").decode())  # CN=client.example.com

    assert (refused.value.field, refused.value.status) == ("csr", 400)
    assert not Peer.objects.filter(renews=laptop).exists()


def test_nobody_can_register_the_fqdn_of_a_renewal(laptop: Peer, owner: Any, other_user: Any, admin: Any) -> None:
    renewal = _issued(_renew(laptop, owner).peer, admin)
    peer_revoke(peer_id=laptop.pk, user=owner, reason="cessationOfOperation")  # the old one is gone

    with pytest.raises(EnrollmentError, match="already registered") as refused:
        peer_register(
            owner=other_user, fqdn=FQDN, kind="client", networks=[], address=None, csr_pem=ANY_CSR, actor=other_user
        )

    assert refused.value.status == 409
    assert _renew(renewal, owner).peer.renews_id == renewal.pk  # a renewal is renewed like any peer


# --- automatic approval -------------------------------------------------------------------------


def test_the_policy_approves_a_csr_renewal_at_once(laptop: Peer, owner: Any, admin: Any) -> None:
    _auto_renewals(admin)

    renewal = _renew(laptop, owner).peer

    assert renewal.decision == Peer.Decision.APPROVED
    assert (renewal.decided_by, renewal.certificate_request.approved_by) == (None, None)  # type: ignore[union-attr]
    event = AuditEvent.objects.get(action="peer.approved", target=f"peer:{renewal.pk}")
    assert event.actor == AUTO_RENEWAL_ACTOR
    assert event.data["auto"] is True
    assert _actions()[-3:] == ["peer.renewal_requested", "certificate.requested", "peer.approved"]
    assert _issued(renewal, admin).status == "issued"


def test_the_policy_approves_a_portal_key_renewal_once_the_key_is_made(laptop: Peer, owner: Any, admin: Any) -> None:
    _auto_renewals(admin)

    renewal = _renew(laptop, owner, csr=None).peer
    assert renewal.status == "pending"  # nothing to sign yet
    peer_key_generate(peer_id=renewal.pk)

    renewal.refresh_from_db()
    assert renewal.decision == Peer.Decision.APPROVED
    assert renewal.decided_by is None
    assert AuditEvent.objects.get(action="peer.approved", target=f"peer:{renewal.pk}").actor == AUTO_RENEWAL_ACTOR
    assert peer_key_generate(peer_id=renewal.pk) is False  # safe to run twice
    assert AuditEvent.objects.filter(action="peer.approved", target=f"peer:{renewal.pk}").count() == 1


def test_the_policy_does_not_approve_first_registrations_or_domains_outside_it(
    laptop: Peer, owner: Any, admin: Any
) -> None:
    _auto_renewals(admin, domains=("corp.example.net",))

    renewal = _renew(laptop, owner).peer
    first = peer_register(
        owner=owner, fqdn="new.corp.example.net", kind="client", networks=[], address=None, csr_pem=ANY_CSR,
        actor=owner,
    )  # fmt: skip

    assert renewal.status == first.status == "pending"
    assert not AuditEvent.objects.filter(action="peer.approved", actor=AUTO_RENEWAL_ACTOR).exists()


def test_the_policy_change_is_audited(admin: Any) -> None:
    _auto_renewals(admin)

    event = AuditEvent.objects.get(action="policy.updated")
    assert event.data["before"]["auto_approve_renewals"] is False
    assert event.data["after"]["auto_approve_renewals"] is True
    assert policy_get().auto_approve_renewals is True


# --- superseding the old certificate --------------------------------------------------------------


def _download(renewal: Peer, owner: Any, at: datetime) -> None:
    render(renewal)
    bundle_download(peer_id=renewal.pk, user=owner, address="192.0.2.7", via="page")
    BundleDownload.objects.filter(bundle__peer=renewal).update(at=at)


def test_the_old_certificate_is_revoked_as_superseded_after_the_grace_period(
    gateway: Peer, laptop: Peer, owner: Any, admin: Any
) -> None:
    renewal = _issued(_renew(laptop, owner).peer, admin)
    now = timezone.now()
    grace = timedelta(hours=72)

    assert renewals_supersede(now=now, grace=grace) == 0  # not downloaded yet
    _download(renewal, owner, at=now - timedelta(hours=71))
    assert renewals_supersede(now=now, grace=grace) == 0  # downloaded, still within the grace period
    laptop.refresh_from_db()
    assert (laptop.status, laptop.retired_at) == ("issued", None)

    assert renewals_supersede(now=now + timedelta(hours=1, seconds=1), grace=grace) == 1

    laptop.refresh_from_db()
    old = _certificate(laptop)
    assert laptop.status == "revoked"
    assert laptop.retired_at is not None
    assert (old.revocation_reason, old.revoked_by) == ("superseded", "policy:renewal")
    assert old.revocation_comment == f"replaced by peer {renewal.pk}"
    revoked = AuditEvent.objects.get(action="certificate.revoked")
    assert (revoked.actor, revoked.data["reason"], revoked.data["peer"]) == ("policy:renewal", "superseded", laptop.pk)
    superseded = AuditEvent.objects.get(action="peer.superseded")
    assert (superseded.target, superseded.data) == (f"peer:{laptop.pk}", {"by": renewal.pk, "how": "superseded"})
    renewal.refresh_from_db()
    assert (renewal.status, renewal.retired_at) == ("issued", None)

    assert renewals_supersede(now=now + timedelta(days=2), grace=grace) == 0  # safe to run twice
    assert AuditEvent.objects.filter(action="certificate.revoked").count() == 1


def test_the_grace_period_comes_from_the_settings(
    gateway: Peer, laptop: Peer, owner: Any, admin: Any, settings: Any
) -> None:
    settings.RENEWAL_GRACE_HOURS = 1
    renewal = _issued(_renew(laptop, owner).peer, admin)
    _download(renewal, owner, at=timezone.now() - timedelta(hours=2))

    assert renewals_supersede() == 1


def test_an_expired_old_certificate_is_retired_without_revocation(laptop: Peer, owner: Any, admin: Any) -> None:
    renewal = _issued(_renew(laptop, owner).peer, admin)
    expiry = _certificate(laptop).not_after

    assert renewals_supersede(now=expiry) == 1  # never downloaded: expiry alone retires it

    laptop.refresh_from_db()
    assert laptop.retired_at is not None
    assert _certificate(laptop).revoked_at is None
    assert not AuditEvent.objects.filter(action="certificate.revoked").exists()
    assert AuditEvent.objects.get(action="peer.superseded").data == {"by": renewal.pk, "how": "expired"}
    assert renewals_supersede(now=expiry + timedelta(days=1)) == 0


def test_a_renewal_not_yet_issued_supersedes_nothing(laptop: Peer, owner: Any) -> None:
    _renew(laptop, owner)

    assert renewals_supersede(now=_certificate(laptop).not_after + timedelta(days=1)) == 0

    laptop.refresh_from_db()
    assert laptop.retired_at is None


def test_the_task_runs_the_sweep(gateway: Peer, laptop: Peer, owner: Any, admin: Any) -> None:
    from django.conf import settings

    from enrollment.tasks import renewal_reminders_send_task, renewals_supersede_task

    renewal = _issued(_renew(laptop, owner).peer, admin)
    _download(renewal, owner, at=timezone.now() - timedelta(hours=73))

    assert renewals_supersede_task() == 1
    assert renewal_reminders_send_task() == 0
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["supersede-renewed"] == {"task": "enrollment.renewals_supersede", "schedule": 3600.0}
    assert schedule["renewal-reminders"] == {"task": "enrollment.renewal_reminders_send", "schedule": 3600.0}


def test_bundles_render_while_a_client_gateway_is_being_renewed(
    client_peer: Peer, gateway: Peer, owner: Any, admin: Any
) -> None:
    renewal = _issued(_renew(client_peer, owner).peer, admin)

    render(renewal)
    bundle = render(gateway)

    # The gateway names the client gateway once, with its networks, while old and new overlap.
    assert (bundle.text_of("iked/iked.conf") or "").count('dstid "client.example.com"') == 1


def test_the_gateway_bundle_follows_a_renewed_gateway(gateway: Peer, admin: Any, second_admin: Any) -> None:
    from bundles import selectors as bundle_selectors
    from bundles import services as bundle_services

    bundle_services.profile_update(actor=admin, gateway_id=gateway.pk)
    renewal = _issued(_renew(gateway, admin).peer, second_admin)
    assert bundle_selectors.gateway_peer(bundle_selectors.profile_get()) == gateway  # the old one until superseded

    Certificate.objects.filter(pk=gateway.certificate_request.certificate.pk).update(revoked_at=timezone.now())

    assert bundle_selectors.gateway_peer(bundle_selectors.profile_get()) == renewal


# --- reminders --------------------------------------------------------------------------------------


def _sent() -> list[str]:
    return [message.subject for message in mail.outbox]


def test_it_reminds_the_owner_at_30_7_and_1_days_once_each(laptop: Peer) -> None:
    expiry = _certificate(laptop).not_after
    subject = f"{FQDN}: the certificate expires on {expiry:%Y-%m-%d %H:%M} UTC"

    assert renewal_reminders_send(now=expiry - timedelta(days=30, seconds=1)) == 0
    assert renewal_reminders_send(now=expiry - timedelta(days=30)) == 1
    assert renewal_reminders_send(now=expiry - timedelta(days=29)) == 0
    assert renewal_reminders_send(now=expiry - timedelta(days=7, hours=1)) == 0
    assert renewal_reminders_send(now=expiry - timedelta(days=6, hours=23)) == 1
    assert renewal_reminders_send(now=expiry - timedelta(days=2)) == 0
    assert renewal_reminders_send(now=expiry - timedelta(hours=12)) == 1
    assert renewal_reminders_send(now=expiry - timedelta(hours=1)) == 0
    assert renewal_reminders_send(now=expiry + timedelta(hours=1)) == 0

    assert _sent() == [subject, subject, subject]
    message = mail.outbox[0]
    assert message.to == ["alice@example.org"]
    link = f"https://ca.example.org/peers/{laptop.pk}/renew/"
    assert f"{FQDN} expires on {expiry:%Y-%m-%d %H:%M} UTC: renew it at {link}" in message.body
    assert sorted(RenewalReminder.objects.values_list("days", flat=True)) == [1, 7, 30]


def test_a_missed_30_day_reminder_is_not_sent_after_the_7_day_one(laptop: Peer) -> None:
    expiry = _certificate(laptop).not_after

    assert renewal_reminders_send(now=expiry - timedelta(days=6)) == 1
    assert renewal_reminders_send(now=expiry - timedelta(days=5)) == 0

    assert sorted(RenewalReminder.objects.values_list("days", flat=True)) == [7, 30]
    assert len(mail.outbox) == 1
    assert renewal_reminders_send(now=expiry - timedelta(hours=2)) == 1


def test_the_thresholds_come_from_the_settings(laptop: Peer, settings: Any) -> None:
    settings.RENEWAL_REMINDER_DAYS = (14,)
    expiry = _certificate(laptop).not_after

    assert renewal_reminders_send(now=expiry - timedelta(days=20)) == 0
    assert renewal_reminders_send(now=expiry - timedelta(days=13)) == 1
    assert renewal_reminders_send(now=expiry - timedelta(days=1)) == 0


def test_renewed_and_revoked_peers_get_no_reminder(laptop: Peer, owner: Any, admin: Any) -> None:
    other, _ = issue(owner, admin, "desk.example.com")
    expiry = _certificate(laptop).not_after
    renewal = _renew(laptop, owner).peer
    peer_revoke(peer_id=other.pk, user=owner, reason="cessationOfOperation")

    assert renewal_reminders_send(now=expiry - timedelta(days=3)) == 0
    assert mail.outbox == []

    peer_reject(peer_id=renewal.pk, approver=admin, reason="make a new key", actor=admin)  # the renewal is off
    assert renewal_reminders_send(now=expiry - timedelta(days=3)) == 1


def test_owners_without_an_address_get_nothing_and_nothing_is_recorded(laptop: Peer, owner: Any) -> None:
    owner.email = ""
    owner.save()
    expiry = _certificate(laptop).not_after

    assert renewal_reminders_send(now=expiry - timedelta(days=3)) == 0

    assert mail.outbox == []
    assert not RenewalReminder.objects.exists()
    owner.email = "alice@example.org"
    owner.save()
    assert renewal_reminders_send(now=expiry - timedelta(days=2)) == 1


def test_a_mail_that_fails_is_sent_on_the_next_run(laptop: Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    from enrollment.services import reminders

    expiry = _certificate(laptop).not_after

    def smtp_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr(reminders, "send_mail", smtp_down)
    assert renewal_reminders_send(now=expiry - timedelta(days=3)) == 0
    assert not RenewalReminder.objects.exists()
    monkeypatch.undo()

    assert renewal_reminders_send(now=expiry - timedelta(days=3)) == 1


@pytest.mark.parametrize(
    ("raw", "parsed"), [("30,7,1", (30, 7, 1)), (" 1, 30 ", (30, 1)), ("14", (14,)), ("825,1", (825, 1))]
)
def test_it_parses_the_reminder_days(raw: str, parsed: tuple[int, ...]) -> None:
    assert renewal_reminder_days(raw) == parsed


@pytest.mark.parametrize("raw", ["", " ", "30,,7", "30,7,", "x", "0", "-1", "7,7", "30;7", "1.5", "826", "٣"])
def test_bad_reminder_days_stop_the_start(raw: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="RENEWAL_REMINDER_DAYS"):
        renewal_reminder_days(raw)
