"""EST (RFC 7030): simpleenroll and simplereenroll on top of registration and renewal.

The HTTP side (authentication, the request, the answer) is ``enrollment.est``.
"""

from __future__ import annotations

from django.contrib.auth.models import User

from enrollment.models import Peer
from enrollment.selectors import est_peer_for_request, est_peer_to_renew
from enrollment.services.errors import EnrollmentError
from enrollment.services.registration import peer_register
from enrollment.services.renewal import peer_renew
from pki.est import EstCsr


def est_actor(user: User) -> str:
    """The audit actor of what a user does through EST: their name, marked with the channel."""
    return f"est:{user.get_username()}"


def peer_est_enroll(*, owner: User, csr: EstCsr) -> Peer:
    """simpleenroll: this owner's peer for this request if the client is asking again, else a new client peer.

    Asking again is sending the same request: same owner, same FQDN, same public key. The newest such
    peer answers whatever its state, so polling never registers a rejected or revoked request again;
    another owner's peers are never looked at. A new peer is registered by ``peer_register`` like any
    other (the same vetting, the same approval, the same audit event, by actor ``est:<user>``).
    """
    found = est_peer_for_request(owner=owner, fqdn=csr.fqdn, public_key_der=csr.public_key_der, renewal=False)
    if found is not None:
        return found
    try:
        return peer_register(
            owner=owner,
            fqdn=csr.fqdn,
            kind=Peer.Kind.CLIENT,
            networks=[],
            address=None,
            csr_pem=csr.pem,
            actor=est_actor(owner),
        )
    except EnrollmentError as exc:
        # Two copies of one request at once: the other registered it a moment ago.
        found = est_peer_for_request(owner=owner, fqdn=csr.fqdn, public_key_der=csr.public_key_der, renewal=False)
        if found is not None:
            return found
        if exc.status == 409 and est_peer_to_renew(owner=owner, fqdn=csr.fqdn) is not None:
            raise EnrollmentError(
                f"{exc}; your certificate for {csr.fqdn} is renewed through simplereenroll "
                "(pki --est with --cert and --key of the current certificate)",
                field=exc.field,
                status=409,
            ) from None
        raise


def peer_est_reenroll(*, owner: User, csr: EstCsr) -> Peer:
    """simplereenroll: this owner's renewal for this request if the client is asking again, else a renewal
    (``peer_renew``) of the owner's issued client peer for the request's FQDN.

    A renewal takes a new key (as on the portal's Renew page): a request with the key of the certificate
    it would replace is refused, which also keeps "asking again" unambiguous.
    """
    found = est_peer_for_request(owner=owner, fqdn=csr.fqdn, public_key_der=csr.public_key_der, renewal=True)
    if found is not None:
        return found
    old = est_peer_to_renew(owner=owner, fqdn=csr.fqdn)
    if old is None:
        raise EnrollmentError(
            f"you have no issued client certificate for {csr.fqdn} to renew; enroll it with simpleenroll",
            field="csr",
            status=404,
        )
    request = old.certificate_request
    if request is not None and bytes(request.public_key_der) == csr.public_key_der:
        raise EnrollmentError(
            f"a renewal needs a new key, and this request has the key of the current certificate for {csr.fqdn}: "
            "make a new key and request (pki --gen, pki --req) and send that",
            field="csr",
            status=409,
        )
    try:
        return peer_renew(peer_id=old.pk, user=owner, csr_pem=csr.pem, actor=est_actor(owner)).peer
    except EnrollmentError:
        found = est_peer_for_request(owner=owner, fqdn=csr.fqdn, public_key_der=csr.public_key_der, renewal=True)
        if found is None:
            raise
        return found
