"""The CA domain: the authority, signing requests, issuance intents, certificates and the audit log.

Only ``authority.services`` writes these rows.
"""

from __future__ import annotations

from functools import cached_property

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.db import models
from django.db.models import Q


class CertificateAuthority(models.Model):
    common_name = models.CharField(max_length=64)
    certificate_pem = models.TextField()
    fingerprint_sha256 = models.CharField(max_length=64, unique=True)
    key_type = models.CharField(max_length=16)
    key_file = models.CharField(max_length=255, help_text="file name of the encrypted key inside CA_KEY_DIR")
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    imported = models.BooleanField(default=False)
    legacy_reasons = models.JSONField(default=list, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_ca"),
        ]

    def __str__(self) -> str:
        return self.common_name

    @property
    def is_legacy(self) -> bool:
        return bool(self.legacy_reasons)

    @cached_property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.certificate_pem.encode("ascii"))

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()


class CertificateRequest(models.Model):
    """An approved order to sign: the signer worker turns it into exactly one certificate."""

    class Status(models.TextChoices):
        PENDING = "pending", "queued for signing"
        SIGNING = "signing", "being signed"
        ISSUED = "issued", "issued"
        FAILED = "failed", "failed"

    class Kind(models.TextChoices):
        CLIENT = "client", "client"
        SERVER = "server", "server"

    ca = models.ForeignKey(CertificateAuthority, on_delete=models.PROTECT, related_name="requests")
    fqdn = models.CharField(max_length=127)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    csr_pem = models.TextField(blank=True)
    public_key_der = models.BinaryField()
    key_type = models.CharField(max_length=16)
    validity_days = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    announce_issued = models.BooleanField(
        default=False, help_text="announce the issuance to the apps above (set for portal peers)"
    )

    class Meta:
        indexes = [models.Index(fields=["status", "queued_at"])]

    def __str__(self) -> str:
        return f"request {self.pk} for {self.fqdn}"


class IssuanceIntent(models.Model):
    """Committed before the signature exists (record before sign): what will be signed, and its serial."""

    request = models.OneToOneField(CertificateRequest, on_delete=models.PROTECT, related_name="intent")
    serial = models.CharField(max_length=40, unique=True, help_text="lower-case hex")
    tbs_der = models.BinaryField()
    tbs_sha256 = models.CharField(max_length=64)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"intent {self.serial} for request {self.request_id}"


class RevocationReason(models.TextChoices):
    """RFC 5280 §5.3.1 CRLReason values a CA of this kind uses (no certificateHold: revocation is final)."""

    UNSPECIFIED = "unspecified", "unspecified"
    KEY_COMPROMISE = "keyCompromise", "key compromise (the private key was lost or stolen)"
    AFFILIATION_CHANGED = "affiliationChanged", "affiliation changed (the user left, the host changed hands)"
    SUPERSEDED = "superseded", "superseded (a renewed certificate replaces it)"
    CESSATION_OF_OPERATION = "cessationOfOperation", "cessation of operation (the peer is retired)"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn", "privilege withdrawn (no longer allowed on the VPN)"


class Certificate(models.Model):
    request = models.OneToOneField(CertificateRequest, on_delete=models.PROTECT, related_name="certificate")
    ca = models.ForeignKey(CertificateAuthority, on_delete=models.PROTECT, related_name="certificates")
    serial = models.CharField(max_length=40, unique=True, help_text="lower-case hex")
    fqdn = models.CharField(max_length=127, db_index=True)
    der = models.BinaryField()
    fingerprint_sha256 = models.CharField(max_length=64, unique=True)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField(db_index=True)
    issued_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, db_index=True)
    revocation_reason = models.CharField(max_length=24, choices=RevocationReason.choices, blank=True)
    revoked_by = models.CharField(max_length=160, blank=True)
    revocation_comment = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [models.Index(fields=["issued_at"], name="certificate_issued_at")]

    def __str__(self) -> str:
        return f"{self.fqdn} ({self.serial})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def revoked_by_name(self) -> str:
        """Who revoked it, for people: "alice" rather than the audit actor "user:alice"."""
        return self.revoked_by.removeprefix("user:")

    @property
    def pem(self) -> str:
        cert = x509.load_der_x509_certificate(bytes(self.der))
        return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


class TaskWakeup(models.Model):
    """One row per debounced sweeper task: whether a run of it is already queued.

    ``authority.wakeups.wake`` queues the task only when its row is not pending (a
    conditional UPDATE), so a burst of causes (a signer batch of a hundred issuances, a revocation
    and a CRL) costs one message; the task clears the flag before it looks for work
    (``wake_done``), so a change committed after that queues the next run.
    """

    name = models.CharField(max_length=100, primary_key=True)
    pending = models.BooleanField(default=False)
    requested_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({'queued' if self.pending else 'idle'})"


class AuditHead(models.Model):
    """One row: the chain head. Appends lock it, so concurrent appends form one contiguous chain."""

    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"audit head at {self.seq}"


class AuditEvent(models.Model):
    """Append-only, hash-chained: hash = SHA-256(prev_hash || canonical JSON of the event)."""

    seq = models.BigIntegerField(unique=True)
    at = models.DateTimeField()
    actor = models.CharField(max_length=160)
    action = models.CharField(max_length=64, db_index=True)
    target = models.CharField(max_length=160, db_index=True)
    data = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["seq"]
        indexes = [
            models.Index(fields=["at"], name="auditevent_at"),
            models.Index(fields=["actor", "seq"], name="auditevent_actor_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.target}"


class Crl(models.Model):
    """A certificate revocation list the signer made and signed; the newest one is published."""

    ca = models.ForeignKey(CertificateAuthority, on_delete=models.PROTECT, related_name="crls")
    number = models.BigIntegerField(help_text="the cRLNumber extension: strictly increasing per CA")
    this_update = models.DateTimeField()
    next_update = models.DateTimeField()
    der = models.BinaryField()
    entries = models.PositiveIntegerField()
    trigger = models.CharField(max_length=16, help_text="revocation | schedule | manual")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["ca", "number"], name="one_crl_number_per_ca")]

    def __str__(self) -> str:
        return f"CRL {self.number} of {self.ca_id}"

    @property
    def pem(self) -> str:
        from cryptography.x509 import load_der_x509_crl

        crl = load_der_x509_crl(bytes(self.der))
        return crl.public_bytes(serialization.Encoding.PEM).decode("ascii")


class AuditCheck(models.Model):
    """The result of a scheduled (or manual) verification of the audit chain."""

    checked_at = models.DateTimeField(auto_now_add=True)
    ok = models.BooleanField()
    events = models.BigIntegerField()
    first_bad_seq = models.BigIntegerField(null=True, blank=True)
    problem = models.CharField(max_length=300, blank=True)

    def __str__(self) -> str:
        return f"audit check {self.checked_at:%Y-%m-%d %H:%M}: {'ok' if self.ok else 'BROKEN'}"


class SignerHeartbeat(models.Model):
    """The last beat of each signer worker (``authority.signer_heartbeat``, every 30 s on the signer queue).

    A web host cannot see a signer on another host, but both see the database: /readyz and /metrics
    read these rows. Written only by ``authority.heartbeat.signer_heartbeat_record``; not audited
    (a beat is no change of state, and the audit log would grow by one event per beat).
    """

    worker = models.CharField(max_length=200, primary_key=True, help_text="the Celery worker's node name")
    seen_at = models.DateTimeField(db_index=True)
    key_ok = models.BooleanField(
        null=True, help_text="whether this worker could use the active CA's key; empty before there is a CA"
    )

    def __str__(self) -> str:
        return f"signer {self.worker} at {self.seen_at:%Y-%m-%d %H:%M:%S}"


class AuditCheckpoint(models.Model):
    """A signed checkpoint of the audit chain (``authority.checkpoints``, docs/security.md T37).

    ``line`` is the whole signed text (``pki.checkpoint``); the other columns are copies for
    ordering and display, and verification reads ``line`` only. The same line is appended to
    CA_AUDIT_CHECKPOINT_FILE, outside the database. An audit table: SELECT and INSERT only.
    """

    seq = models.BigIntegerField(db_index=True, help_text="the last event the checkpoint covers")
    at = models.DateTimeField()
    line = models.TextField()

    class Meta:
        ordering = ["-seq"]

    def __str__(self) -> str:
        return f"audit checkpoint at {self.seq}"
