"""Revoking a peer's certificate: its owner (for a few reasons) or a CA admin (for any)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from authority.revocation import RevocationError, certificate_revoke
from core.roles import is_auditor, is_ca_admin
from enrollment.models import Peer
from enrollment.selectors import peer_fresh
from enrollment.services.errors import EnrollmentError

# What an owner may say about their own peer ("my laptop was stolen"); admins may use every reason.
OWNER_REASONS = ("keyCompromise", "cessationOfOperation", "affiliationChanged", "unspecified")


def peer_revoke(*, peer_id: int, user: User, reason: str, comment: str = "") -> Peer:
    """Revoke the peer's certificate: a CA admin any peer, an owner their own. The FQDN becomes free."""
    admin = is_ca_admin(user)
    if is_auditor(user) and not admin:
        raise EnrollmentError("auditors review; they do not revoke", status=403)
    peer = Peer.objects.select_related("certificate_request__certificate").filter(pk=peer_id).first()
    if peer is None or not (admin or peer.owner_id == user.pk):
        raise EnrollmentError("no such peer", status=404)
    if peer.status == "revoked":
        raise EnrollmentError("this peer's certificate is already revoked", status=409)
    if peer.status != "issued":
        raise EnrollmentError("only an issued certificate can be revoked", status=409)
    if not admin and reason not in OWNER_REASONS:
        raise EnrollmentError(f"choose one of: {', '.join(OWNER_REASONS)}", field="reason")
    certificate = peer.certificate_request.certificate  # type: ignore[union-attr]
    with transaction.atomic():
        try:
            certificate_revoke(
                certificate_id=certificate.pk, reason=reason, actor=user, comment=comment.strip(), peer_id=peer.pk
            )
        except RevocationError as exc:
            raise EnrollmentError(str(exc), field=exc.field, status=exc.status) from None
        Peer.objects.filter(pk=peer.pk).update(retired_at=timezone.now())
    return peer_fresh(peer.pk)
