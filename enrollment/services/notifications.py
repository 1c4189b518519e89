"""Mail to peer owners about their peers: approved, rejected, issued. Sent by workers, never in a request."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail

from core.tasks import send_by_name
from enrollment import task_names
from enrollment.models import Peer

log = logging.getLogger(__name__)

_SUBJECTS = {
    "approved": "{fqdn}: approved, the certificate is being signed",
    "rejected": "{fqdn}: request rejected",
    "issued": "{fqdn}: your certificate is ready",
}


def notify_later(peer_id: int, event: str) -> None:
    """Queue the owner's mail about ``event``. Call it after commit. A broker that is down loses the mail,
    never the decision (there is no sweeper for mail: the peer's page shows the state anyway)."""
    if not send_by_name(task_names.PEER_NOTIFY, peer_id, event):
        log.warning("notification %s for peer %s not sent", event, peer_id)


def peer_notify(*, peer_id: int, event: str) -> bool:
    """Mail the owner about a decision or the issued certificate. Returns False when there is no address."""
    return _peer_mail(Peer.objects.select_related("owner").get(pk=peer_id), event)


def _peer_mail(peer: Peer, event: str) -> bool:
    if event not in _SUBJECTS or not peer.owner.email:
        return False
    link = f"{settings.SITE_URL}/peers/{peer.pk}/"
    lines = [f"Hello {peer.owner.get_username()},", ""]
    if event == "approved":
        lines.append(
            f"A CA admin approved {peer.fqdn}. The certificate is being signed; you get another mail when it is ready."
        )
    elif event == "rejected":
        lines.append(f"A CA admin rejected the request for {peer.fqdn}: {peer.decision_reason}")
        lines.append("You can register it again with the problem fixed.")
    else:
        lines.append(f"The certificate for {peer.fqdn} is issued. Download it from the peer's page.")
    lines += ["", link, "", "-- ca_portal"]
    send_mail(_SUBJECTS[event].format(fqdn=peer.fqdn), "\n".join(lines), None, [peer.owner.email])
    return True


def peers_issued_announce(*, request_ids: list[int], **_signal: object) -> None:
    """Receiver of ``authority.signals.certificates_issued`` (in the signer): queue the owners' mail."""
    send_by_name(task_names.PEERS_ISSUED_NOTIFY, request_ids)


def peers_issued_notify(*, request_ids: list[int]) -> int:
    """Called once per signer batch: mail each issued peer's owner.

    Returns how many owners were mailed. A mail that fails (SMTP down) is queued again on its own,
    so the others are not sent twice by a retry of the whole batch.
    """
    peers = list(Peer.objects.select_related("owner").filter(certificate_request_id__in=request_ids).order_by("pk"))
    if not peers:  # requests made by sign_csr's path for no portal peer, or by tests
        return 0
    mailed = 0
    for peer in peers:
        try:
            mailed += _peer_mail(peer, "issued")
        except OSError:
            log.warning("mail to the owner of peer %s failed; queued again", peer.pk)
            notify_later(peer.pk, "issued")
    return mailed
