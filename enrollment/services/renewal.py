"""Renewal: a new peer with the same identity and a new key, approved by a CA admin or by the site
policy, and the old certificate superseded once the new one is in use."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from authority.audit import audit_record
from authority.models import CertificateRequest
from authority.revocation import RevocationError, certificate_revoke
from authority.services import Actor, actor_name
from core.roles import is_auditor, is_ca_admin
from enrollment.models import Peer
from enrollment.selectors import certificate_of, peer_fresh, policy_get, renewal_blocker
from enrollment.services.decisions import _approve_locked, _pending_locked, overlap_lock
from enrollment.services.errors import EnrollmentError
from enrollment.services.registration import Registration, _peer_create, _peer_input_clean

log = logging.getLogger(__name__)

AUTO_RENEWAL_ACTOR = "policy:auto-renewal"
SUPERSEDE_ACTOR = "policy:renewal"


def peer_renew(
    *, peer_id: int, user: User, csr_pem: str | None, now: datetime | None = None, actor: Actor = None
) -> Registration:
    """Request a renewal of an issued peer: a new peer with the same identity and a new key.

    Only the owner may renew (404 for anyone else, 403 for auditors). With a CSR the new key is the
    owner's; without one the signer makes it, as at registration, and the passphrase is returned to be
    shown once. The renewal waits for a CA admin unless the site policy approves renewals itself
    (``renewal_auto_approve``). The old certificate stays valid until ``renewals_supersede`` revokes it.
    ``actor`` names who asked in the audit log (default: ``user``; EST passes ``est:<user>``).
    """
    if is_auditor(user) and not is_ca_admin(user):
        raise EnrollmentError("auditors review; they do not renew", status=403)
    old = Peer.objects.filter(pk=peer_id, owner_id=user.pk).first()
    if old is None:
        raise EnrollmentError("no such peer", status=404)
    clean_networks, clean_address = _peer_input_clean(
        fqdn=old.fqdn, kind=old.kind, networks=list(old.networks), address=old.address, csr_pem=csr_pem
    )
    with transaction.atomic():
        old = (
            Peer.objects.select_for_update(of=("self",))
            .select_related("certificate_request__certificate")
            .get(pk=old.pk)
        )
        blocker = renewal_blocker(old, now=now)
        if blocker:
            raise EnrollmentError(blocker, status=409)
        # A renewal whose signing failed is replaced by this one (it never had a certificate).
        failed = Peer.objects.filter(
            renews=old, retired_at__isnull=True, certificate_request__status=CertificateRequest.Status.FAILED
        )
        for stale in list(failed.values_list("pk", flat=True)):
            Peer.objects.filter(pk=stale).update(retired_at=timezone.now())
            audit_record(
                "peer.retired",
                actor=actor_name(actor if actor is not None else user),
                target=f"peer:{stale}",
                reason="failed renewal replaced",
            )
        peer, passphrase = _peer_create(
            owner=user,
            fqdn=old.fqdn,
            kind=old.kind,
            networks=clean_networks,
            address=clean_address,
            csr_pem=csr_pem,
            renews=old,
        )
        audit_record(
            "peer.renewal_requested",
            actor=actor_name(actor if actor is not None else user),
            target=f"peer:{peer.pk}",
            renews=old.pk,
            fqdn=peer.fqdn,
            key_source=peer.key_source,
        )
    if csr_pem:
        renewal_auto_approve(peer_id=peer.pk)
    return Registration(peer=peer_fresh(peer.pk), key_passphrase=passphrase)


def renewal_auto_approve(*, peer_id: int, enqueue: bool = True) -> Peer | None:
    """Approve a pending renewal without a CA admin if the site policy allows it and its identity is unchanged.

    Unchanged: the FQDN and kind of the certificate it replaces, which must still be valid (not revoked),
    the same owner, and a domain the policy allows. Returns the approved peer, or None: it stays in the queue.
    """
    policy = policy_get()
    if not policy.auto_approve_renewals:
        return None
    peer = (
        Peer.objects.select_related("renews__certificate_request__certificate", "renews__certificate_request")
        .filter(pk=peer_id, decision=Peer.Decision.PENDING, renews__isnull=False)
        .first()
    )
    if peer is None or not peer.key_ready or peer.renews is None:
        return None
    old = peer.renews
    certificate = certificate_of(old)
    unchanged = (
        certificate is not None
        and certificate.revoked_at is None
        and old.retired_at is None
        and certificate.fqdn == peer.fqdn
        and old.certificate_request is not None
        and old.certificate_request.kind == peer.kind
        and old.owner_id == peer.owner_id
        and policy.domain_allowed(peer.fqdn)
    )
    if not unchanged:
        return None
    try:
        with transaction.atomic():
            overlap_lock(peer.pk)
            locked = _pending_locked(peer.pk)
            _approve_locked(
                locked, approver=None, actor=AUTO_RENEWAL_ACTOR, validity_days=None, enqueue=enqueue, policy=policy
            )
    except EnrollmentError as exc:
        # Raced with an admin, the CA refuses, or its networks overlap another live peer's (the policy
        # never accepts an overlap): a person decides instead, on the approval page.
        log.warning("renewal %s not approved automatically: %s", peer_id, exc)
        return None
    return peer_fresh(peer.pk)


def renewals_supersede(*, now: datetime | None = None, grace: timedelta | None = None) -> int:
    """Retire the peers whose renewal is issued and in use; returns how many were retired.

    A renewal is in use once its bundle was downloaded ``grace`` ago (RENEWAL_GRACE_HOURS): then the
    old certificate is revoked as superseded. An old certificate that expired meanwhile is only retired
    (an expired certificate needs no revocation). Safe to run twice, and alongside itself.
    """
    moment = now or timezone.now()
    cutoff = moment - (grace if grace is not None else timedelta(hours=settings.RENEWAL_GRACE_HOURS))
    renewals = Peer.objects.filter(
        renews__isnull=False,
        renews__retired_at__isnull=True,
        retired_at__isnull=True,
        decision=Peer.Decision.APPROVED,
        certificate_request__status=CertificateRequest.Status.ISSUED,
        certificate_request__certificate__revoked_at__isnull=True,
    ).order_by("pk")
    retired = 0
    for renewal_id, old_id in list(renewals.values_list("pk", "renews_id")[:1000]):
        if old_id is not None:
            retired += _supersede_one(renewal_id=renewal_id, old_id=old_id, cutoff=cutoff, now=moment)
    return retired


def _supersede_one(*, renewal_id: int, old_id: int, cutoff: datetime, now: datetime) -> int:
    with transaction.atomic():
        old = (
            Peer.objects.select_for_update(of=("self",))
            .select_related("certificate_request__certificate")
            .filter(pk=old_id, retired_at__isnull=True)
            .first()
        )
        if old is None:  # superseded meanwhile
            return 0
        certificate = certificate_of(old)
        if certificate is None:  # the old peer was never issued: nothing to supersede
            return 0
        if certificate.revoked_at is not None or certificate.not_after <= now:
            how = "revoked" if certificate.revoked_at is not None else "expired"
        else:
            downloaded = Peer.objects.filter(pk=renewal_id, bundles__downloads__at__lte=cutoff).exists()
            if not downloaded:
                return 0
            try:
                certificate_revoke(
                    certificate_id=certificate.pk,
                    reason="superseded",
                    actor=SUPERSEDE_ACTOR,
                    comment=f"replaced by peer {renewal_id}",
                    peer_id=old.pk,
                )
                how = "superseded"
            except RevocationError:  # revoked by someone else a moment ago
                how = "revoked"
        Peer.objects.filter(pk=old.pk).update(retired_at=now)
        audit_record("peer.superseded", actor=SUPERSEDE_ACTOR, target=f"peer:{old.pk}", by=renewal_id, how=how)
    return 1
