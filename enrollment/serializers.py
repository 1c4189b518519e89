"""The shapes of the peer API (docs/architecture.md "Interfaces other programs rely on").

Input serializers check types and sizes only and refuse undeclared fields; what a value means
(an acceptable FQDN, a CIDR network, a CSR that matches) is decided by ``enrollment.services``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from authority.models import Certificate
from core.api import StrictCharField, StrictSerializer
from enrollment.models import Peer
from enrollment.services import MAX_NETWORKS, MAX_REASON
from pki.csr import MAX_CSR_BYTES
from pki.names import MAX_FQDN_LENGTH

PEER_STATUSES = ["pending", "approved", "issued", "rejected", "revoked", "failed"]
PEER_PROGRESS = ["making-key", "pending", "approved", "signing", "issued", "rejected", "revoked", "failed"]
ONE_TIME_NOTE = (
    "The portal is making this peer's private key and will keep it encrypted with key_passphrase. "
    "The passphrase is shown only in this response: store it now, it cannot be shown again."
)


# --- input -----------------------------------------------------------------------------------


class PeerCreateSerializer(StrictSerializer):
    """A peer to register; fields not listed here are refused."""

    fqdn = StrictCharField(max_length=MAX_FQDN_LENGTH, help_text="lower-case FQDN, e.g. client.example.com")
    kind = serializers.ChoiceField(
        choices=Peer.Kind.choices, default=Peer.Kind.CLIENT, help_text="server (a VPN gateway) is for CA admins only"
    )
    networks = serializers.ListField(
        child=StrictCharField(max_length=64),
        max_length=MAX_NETWORKS,
        default=list,
        help_text="networks behind the peer in CIDR form, e.g. 10.10.10.0/24",
    )
    address = StrictCharField(
        max_length=64,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="the public IP address; required for a server",
    )
    csr = StrictCharField(
        max_length=MAX_CSR_BYTES,
        required=False,
        allow_null=True,
        allow_blank=True,
        trim_whitespace=False,
        help_text="PEM certificate request; leave it out and the portal makes the key",
    )


MAX_ACCEPTED_OVERLAPS = 100


class PeerApproveSerializer(StrictSerializer):
    """Approval; the body may be empty or ``{}``. A peer whose networks overlap another live peer's is
    approved only with ``accept_overlap_with`` naming each such peer (a 409 names them)."""

    accept_overlap_with = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=10**18 - 1),
        max_length=MAX_ACCEPTED_OVERLAPS,
        required=False,
        default=list,
        help_text="ids of the peers whose network overlap with this one you accept (recorded in the audit log)",
    )


class PeerRejectSerializer(StrictSerializer):
    """Why the request is rejected."""

    reason = StrictCharField(max_length=MAX_REASON, help_text="why; the owner sees it")


class PeerRevokeSerializer(StrictSerializer):
    """Why the certificate is revoked (RFC 5280 reason codes); owners may use the first four."""

    reason = serializers.ChoiceField(
        choices=[
            "keyCompromise",
            "cessationOfOperation",
            "affiliationChanged",
            "unspecified",
            "superseded",
            "privilegeWithdrawn",
        ],
        help_text="keyCompromise for a lost or stolen device; superseded and privilegeWithdrawn are for CA admins",
    )
    comment = StrictCharField(max_length=500, required=False, default="", help_text="a note for the audit log")


class PeerFilterSerializer(serializers.Serializer):  # type: ignore[type-arg]
    status = serializers.ChoiceField(choices=PEER_STATUSES, required=False)
    kind = serializers.ChoiceField(choices=Peer.Kind.choices, required=False)
    fqdn = StrictCharField(max_length=MAX_FQDN_LENGTH, required=False, help_text="exact FQDN")


# --- output ----------------------------------------------------------------------------------


class PeerCertificateSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    pem = serializers.CharField(read_only=True)

    class Meta:
        model = Certificate
        fields = ["serial", "not_before", "not_after", "fingerprint_sha256", "pem"]
        read_only_fields = fields


class PeerSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    networks = serializers.ListField(child=serializers.CharField(), read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True)
    status = serializers.ChoiceField(choices=PEER_STATUSES, read_only=True)
    progress = serializers.ChoiceField(choices=PEER_PROGRESS, read_only=True)
    certificate = serializers.SerializerMethodField()

    class Meta:
        model = Peer
        fields = [
            "id",
            "fqdn",
            "kind",
            "networks",
            "address",
            "status",
            "progress",
            "owner",
            "key_source",
            "created_at",
            "decision_reason",
            "certificate",
        ]
        read_only_fields = fields

    @extend_schema_field(PeerCertificateSerializer(allow_null=True))
    def get_certificate(self, peer: Peer) -> dict[str, Any] | None:
        request = peer.certificate_request
        if request is None:
            return None
        try:
            certificate = request.certificate
        except ObjectDoesNotExist:
            return None
        return dict(_certificate_output().to_representation(certificate))


class PeerCreatedSerializer(PeerSerializer):
    """201 for a registration: the peer, plus the one-time passphrase when the portal makes the key."""

    # Not read-only, so the schema lists them as optional: they are absent for a CSR registration.
    key_passphrase = serializers.CharField(required=False, help_text="shown once; only when the portal makes the key")
    key_passphrase_note = serializers.CharField(required=False)

    class Meta(PeerSerializer.Meta):
        fields = [*PeerSerializer.Meta.fields, "key_passphrase", "key_passphrase_note"]
        read_only_fields = PeerSerializer.Meta.fields


# One output serializer per process, reused for every peer as DRF's ``many=True`` reuses its child:
# building a ModelSerializer's fields took longer than filling them (about 0.4 of 0.5 ms per peer).
# ``to_representation`` only reads the fields, and no context is used, so sharing is safe.


@cache
def _peer_output() -> PeerSerializer:
    return PeerSerializer()


@cache
def _certificate_output() -> PeerCertificateSerializer:
    return PeerCertificateSerializer()


def peer_data(peer: Peer) -> dict[str, Any]:
    """What the API shows of one peer: ``PeerSerializer(peer).data``."""
    return dict(_peer_output().to_representation(peer))


def peer_created_data(peer: Peer, key_passphrase: str) -> dict[str, Any]:
    data = peer_data(peer)
    if key_passphrase:
        data["key_passphrase"] = key_passphrase
        data["key_passphrase_note"] = ONE_TIME_NOTE
    return data
