"""Peers: the IPsec hosts (roaming clients, client gateways, the VPN gateway) that get certificates."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from ca_portal.authority.models import CertificateRequest


class Peer(models.Model):
    class Kind(models.TextChoices):
        CLIENT = "client", "client"
        SERVER = "server", "server (VPN gateway)"

    class Decision(models.TextChoices):
        PENDING = "pending", "waiting for approval"
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"

    fqdn = models.CharField(max_length=127)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.CLIENT)
    networks = models.JSONField(default=list, blank=True)
    address = models.GenericIPAddressField(null=True, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="peers")
    csr_pem = models.TextField(blank=True)
    decision = models.CharField(max_length=8, choices=Decision.choices, default=Decision.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    certificate_request = models.OneToOneField(
        CertificateRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="peer"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["fqdn"], condition=~Q(decision="rejected"), name="one_live_peer_per_fqdn"),
        ]

    def __str__(self) -> str:
        return self.fqdn

    @property
    def status(self) -> str:
        """pending | approved | issued | rejected | failed (revoked arrives with revocation)."""
        if self.decision != self.Decision.APPROVED:
            return self.decision
        request = self.certificate_request
        if request is None or request.status in (CertificateRequest.Status.PENDING, CertificateRequest.Status.SIGNING):
            return "approved"
        return request.status
