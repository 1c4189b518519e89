"""Peers: the IPsec hosts (roaming clients, client gateways, the VPN gateway) that get certificates."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from authority.models import CertificateRequest


class SitePolicy(models.Model):
    """The site's issuance policy, one row (pk=1), edited by CA admins."""

    allowed_domains = models.JSONField(
        default=list, blank=True, help_text="FQDN suffixes peers may use, e.g. example.com; empty allows any"
    )
    default_validity_days = models.PositiveIntegerField(default=365)
    allow_self_approval = models.BooleanField(
        default=False, help_text="a site with exactly one CA admin may approve that admin's own requests"
    )
    auto_approve_renewals = models.BooleanField(
        default=False,
        help_text="renewals that keep the FQDN and kind of the certificate they replace need no CA admin",
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return "site policy"

    def domain_allowed(self, fqdn: str) -> bool:
        return not self.allowed_domains or any(
            fqdn == suffix or fqdn.endswith("." + suffix) for suffix in self.allowed_domains
        )


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

    class KeySource(models.TextChoices):
        CSR = "csr", "my own CSR"
        PORTAL = "portal", "made by the portal"

    key_source = models.CharField(max_length=8, choices=KeySource.choices, default=KeySource.CSR)
    csr_pem = models.TextField(blank=True, help_text="for portal-made keys: the CSR the signer made with the new key")
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
    retired_at = models.DateTimeField(
        null=True, blank=True, help_text="set when its certificate is revoked: the FQDN is free to register again"
    )
    renews = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="renewals",
        help_text="the peer whose certificate this one replaces; both are live until the old one is superseded",
    )

    class Meta:
        constraints = [
            # One live peer per FQDN, except that a renewal coexists with the peer it renews
            # (peer_register_full still refuses every FQDN that any live peer holds).
            models.UniqueConstraint(
                fields=["fqdn"],
                condition=~Q(decision="rejected") & Q(retired_at__isnull=True) & Q(renews__isnull=True),
                name="one_live_peer_per_fqdn_v3",
            ),
            models.UniqueConstraint(
                fields=["renews"],
                condition=~Q(decision="rejected") & Q(retired_at__isnull=True),
                name="one_live_renewal_per_peer",
            ),
        ]
        # Registration's "is this FQDN live?" check, EST's retry lookup and renewals look peers up by
        # FQDN; the partial unique index above does not serve them (its condition names `renews`).
        indexes = [models.Index(fields=["fqdn"], name="peer_fqdn")]

    def __str__(self) -> str:
        return self.fqdn

    @property
    def status(self) -> str:
        """The API status: pending | approved | issued | rejected | revoked | failed."""
        if self.decision != self.Decision.APPROVED:
            return self.decision
        request = self.certificate_request
        if request is None or request.status in (CertificateRequest.Status.PENDING, CertificateRequest.Status.SIGNING):
            return "approved"
        if request.status == CertificateRequest.Status.ISSUED:
            certificate = getattr(request, "certificate", None)
            if certificate is not None and certificate.revoked_at is not None:
                return "revoked"
        return request.status

    @property
    def key_ready(self) -> bool:
        return bool(self.csr_pem)

    @property
    def progress(self) -> str:
        """The finer step shown to people: making-key, pending, approved, signing, issued, rejected, failed."""
        if self.decision == self.Decision.PENDING and not self.key_ready:
            return "making-key"
        request = self.certificate_request
        if self.decision == self.Decision.APPROVED and request is not None:
            if request.status == CertificateRequest.Status.SIGNING:
                return "signing"
        return self.status


class PortalKey(models.Model):
    """A private key the portal made for a peer, kept only encrypted until its owner downloads it.

    ``handoff_passphrase`` lives only from registration until the signer has encrypted the new
    key with it (seconds, normally); the web tier shows it to the owner once and never stores it
    elsewhere. The bundles issue delivers ``encrypted_pem`` and destroys it after the first download.
    """

    peer = models.OneToOneField(Peer, on_delete=models.CASCADE, related_name="portal_key")
    handoff_passphrase = models.CharField(max_length=128, blank=True)
    encrypted_pem = models.TextField(blank=True)
    made_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField()
    destroyed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"portal key for {self.peer.fqdn}"


class RenewalReminder(models.Model):
    """A renewal reminder for one certificate at one threshold (days before expiry): sent at most once.

    A row for a threshold also stands for every larger one, so a reminder that was missed (the
    certificate was issued for less than 30 days, the beat was down) is not sent late.
    """

    certificate = models.ForeignKey("authority.Certificate", on_delete=models.CASCADE, related_name="renewal_reminders")
    days = models.PositiveIntegerField()
    sent_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["certificate", "days"], name="one_renewal_reminder_per_day")]

    def __str__(self) -> str:
        return f"reminder {self.days}d for certificate {self.certificate_id}"
