"""A CA admin's decision on a pending peer (or the site policy's, for a renewal): approve or reject."""

from __future__ import annotations

from collections.abc import Collection

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from authority.audit import audit_record
from authority.models import CertificateRequest
from authority.services import Actor, AuthorityError, actor_name, certificate_request_create
from enrollment.models import Peer, PortalKey, SitePolicy
from enrollment.networks import network_overlaps
from enrollment.selectors import overlap_warning, policy_get, self_approval_allowed
from enrollment.services.errors import EnrollmentError
from enrollment.services.notifications import notify_later
from pki.errors import PkiError

MAX_REASON = 500


def peer_approve(
    *,
    peer_id: int,
    approver: User,
    allow_self_approval: bool | None = None,
    actor: Actor,
    validity_days: int | None = None,
    enqueue: bool = True,
    accept_overlap_with: Collection[int] = (),
) -> Peer:
    """pending -> approved, and the signing order to the signer. Exactly one caller wins a race.

    ``allow_self_approval`` None means: as the site policy says. Raises ``Peer.DoesNotExist`` for
    an unknown id. Returns the peer as this transaction committed it (no re-read).

    A peer whose networks overlap another live peer's (the VPN gateway's included) is approved only
    when ``accept_overlap_with`` names every such peer (the approval page's "I accept the overlap"
    sends the ones it showed); otherwise 409. The accepted overlaps go into the ``peer.approved`` event.
    """
    policy = policy_get()
    refused = False
    with transaction.atomic():
        overlap_lock(peer_id)
        peer = _pending_locked(peer_id)
        if peer.owner_id == approver.pk and not (
            self_approval_allowed(policy) if allow_self_approval is None else allow_self_approval
        ):
            refused = True
        else:
            _approve_locked(
                peer,
                approver=approver,
                actor=actor,
                validity_days=validity_days,
                enqueue=enqueue,
                policy=policy,
                accept_overlap_with=accept_overlap_with,
            )
    if refused:
        # Recorded in its own transaction: a refused attempt is a security event (T29, T32).
        audit_record("peer.approve_refused", actor=actor_name(actor), target=f"peer:{peer_id}", reason="self-approval")
        raise EnrollmentError("you cannot approve a request you filed yourself", status=403)
    return peer


def overlap_lock(peer_id: int) -> None:
    """Lock the peer and every live peer whose networks overlap its own, in id order (one order for all).

    Two approvals of overlapping peers then run one after the other, so the second sees the first
    (two pending requests for one network, approved at the same moment by two admins). A peer
    without networks locks nothing here; ``_pending_locked`` locks it.
    """
    row = Peer.objects.filter(pk=peer_id).values_list("fqdn", "networks").first()
    if row is None or not row[1]:
        return
    fqdn, networks = row
    others = {overlap.owner.peer_id for overlap in network_overlaps(list(networks), fqdn=fqdn)}
    if others:
        list(Peer.objects.select_for_update(of=("self",)).filter(pk__in={peer_id, *others}).order_by("pk").only("pk"))


def _overlaps_accepted(peer: Peer, accept_overlap_with: Collection[int]) -> list[dict[str, object]]:
    """The peer's overlaps with other live peers, as the audit event records them; 409 if one is not accepted."""
    found = network_overlaps(list(peer.networks), fqdn=peer.fqdn)
    accepted = set(accept_overlap_with)
    missing = [overlap for overlap in found if overlap.owner.peer_id not in accepted]
    if missing:
        ids = ", ".join(str(i) for i in sorted({overlap.owner.peer_id for overlap in missing}))
        raise EnrollmentError(
            f"{'; '.join(overlap_warning(overlap) for overlap in missing[:5])}. Approve only if both may hold "
            f"these addresses, accepting the overlap with peer {ids} (the approval page's 'I accept the overlap', "
            "or accept_overlap_with in the API)",
            field="accept_overlap_with",
            status=409,
        )
    return [{"network": o.network, "overlaps": o.other, "peer": o.owner.peer_id, "fqdn": o.owner.fqdn} for o in found]


def _pending_locked(peer_id: int) -> Peer:
    """The peer, locked, if it can be approved now (pending, key made); else 409."""
    peer = Peer.objects.select_for_update(of=("self",)).select_related("owner").get(pk=peer_id)
    if peer.decision != Peer.Decision.PENDING:
        raise EnrollmentError(f"{peer.fqdn} is {peer.status}, not pending", status=409)
    if not peer.key_ready:
        raise EnrollmentError(f"the key for {peer.fqdn} is still being made; try again in a moment", status=409)
    return peer


def _approve_locked(
    peer: Peer,
    *,
    approver: User | None,
    actor: Actor,
    validity_days: int | None,
    enqueue: bool,
    policy: SitePolicy,
    accept_overlap_with: Collection[int] = (),
) -> None:
    """pending -> approved and the signing order, inside the caller's transaction, on the locked ``peer``.

    Without an approver it is the site policy that approves (an automatic renewal): no person is
    recorded as the decider, the audit event says ``auto``, and the owner is not mailed until issuance.
    ``peer`` is updated in place to what is written, so callers need not read it again.
    """
    accepted = _overlaps_accepted(peer, accept_overlap_with)
    overlap_data: dict[str, object] = {"overlaps_accepted": accepted} if accepted else {}
    decided_at = timezone.now()  # the decision comes before the request it makes (the auditors' timeline)
    try:
        request = certificate_request_create(
            fqdn=peer.fqdn,
            kind=peer.kind,
            csr_pem=peer.csr_pem,
            validity_days=validity_days if validity_days is not None else policy.default_validity_days,
            requested_by=peer.owner,
            approved_by=approver,
            actor=actor,
            enqueue=enqueue,
            announce_issued=True,
        )
    except (PkiError, AuthorityError) as exc:
        raise EnrollmentError(str(exc), status=409) from None
    # The decision and the link to the request in one statement. The row is locked and was pending
    # (``_pending_locked``); the condition on the decision stays as a second guard, and a miss rolls
    # the request back with everything else.
    claimed = Peer.objects.filter(pk=peer.pk, decision=Peer.Decision.PENDING).update(
        decision=Peer.Decision.APPROVED, decided_by=approver, decided_at=decided_at, certificate_request=request
    )
    if claimed != 1:
        raise EnrollmentError(f"{peer.fqdn} was decided by someone else meanwhile", status=409)
    peer.decision, peer.decided_by, peer.decided_at = Peer.Decision.APPROVED, approver, decided_at
    peer.certificate_request = request
    # The request was made in this transaction, so no certificate can exist for it yet: say so,
    # rather than let ``peer.status`` and the API ask the database.
    CertificateRequest.certificate.related.set_cached_value(request, None)
    if approver is None:
        audit_record(
            "peer.approved",
            actor=actor_name(actor),
            target=f"peer:{peer.pk}",
            request=request.pk,
            auto=True,
            **overlap_data,
        )
    else:
        audit_record(
            "peer.approved", actor=actor_name(actor), target=f"peer:{peer.pk}", request=request.pk, **overlap_data
        )
        peer_pk = peer.pk
        transaction.on_commit(lambda: notify_later(peer_pk, "approved"))


def peer_reject(*, peer_id: int, approver: User, reason: str, actor: Actor) -> Peer:
    """pending -> rejected with a reason the owner sees. The FQDN becomes free to register again."""
    reason = (reason or "").strip()
    if not reason:
        raise EnrollmentError("say why the request is rejected; the owner sees it", field="reason")
    if len(reason) > MAX_REASON:
        raise EnrollmentError(f"the reason is limited to {MAX_REASON} characters", field="reason")
    with transaction.atomic():
        peer = Peer.objects.select_for_update(of=("self",)).select_related("owner").get(pk=peer_id)
        decided_at = timezone.now()
        claimed = Peer.objects.filter(pk=peer.pk, decision=Peer.Decision.PENDING).update(
            decision=Peer.Decision.REJECTED, decided_by=approver, decided_at=decided_at, decision_reason=reason
        )
        if claimed != 1:
            raise EnrollmentError(f"{peer.fqdn} is {peer.status}, not pending", status=409)
        PortalKey.objects.filter(peer=peer, destroyed_at__isnull=True).update(
            encrypted_pem="", handoff_passphrase="", destroyed_at=timezone.now()
        )
        audit_record("peer.rejected", actor=actor_name(actor), target=f"peer:{peer.pk}", reason=reason)
        transaction.on_commit(lambda: notify_later(peer.pk, "rejected"))
    # The peer as committed, without reading it again: it was pending, so it has no signing request.
    peer.decision, peer.decided_by, peer.decided_at = Peer.Decision.REJECTED, approver, decided_at
    peer.decision_reason = reason
    return peer
