"""Bundles: the site profile every file is rendered from, the rendered versions, downloads and links."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from authority.models import Certificate
from bundles.renderers.spec import DEFAULT_SUITE
from enrollment.models import Peer


class SiteProfile(models.Model):
    """The site-wide inputs of every bundle, one row (pk=1), edited by CA admins.

    ``generation`` is bumped by every change; a bundle rendered from an older generation is
    stale and the render sweeper makes a new one (that is how 1,000 bundles follow a suite change).
    """

    gateway = models.ForeignKey(
        Peer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", limit_choices_to={"kind": "server"}
    )
    ext_if = models.CharField(max_length=16, default="em0", help_text="the gateway's outside interface (pf)")
    int_if = models.CharField(max_length=16, default="em1", help_text="the gateway's inside interface (pf)")
    client_ext_if = models.CharField(max_length=16, default="em0", help_text="clients' outside interface (ipf)")
    client_int_if = models.CharField(max_length=16, default="em1", help_text="client gateways' inside interface (ipf)")
    suite = models.CharField(max_length=40, default=DEFAULT_SUITE)
    legacy_allowed = models.BooleanField(default=False)
    remote_id_check = models.BooleanField(
        default=True, help_text="the gateway's policy names every issued peer's FQDN (the case study's extra check)"
    )
    services = models.JSONField(default=list, blank=True)
    admin_hosts = models.JSONField(default=list, blank=True)
    generation = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return "site profile"


class Bundle(models.Model):
    """One rendered version of a peer's files (without any private key; that joins at download).

    A new version is made only when the content changes, so versions are a history of real changes
    and the page can show the difference from the previous one.
    """

    peer = models.ForeignKey(Peer, on_delete=models.CASCADE, related_name="bundles")
    version = models.PositiveIntegerField()
    files = models.JSONField(help_text="[{path, mode, text}] sorted by path")
    sha256 = models.CharField(max_length=64, help_text="of the zip without a private key")
    certificate = models.ForeignKey(Certificate, on_delete=models.PROTECT, related_name="bundles")
    site_generation = models.PositiveIntegerField()
    peers_digest = models.CharField(max_length=64, blank=True, help_text="the gateway's: issued peers it names")
    suite = models.CharField(max_length=40)
    legacy = models.BooleanField(default=False)
    lists_key = models.BooleanField(default=False, help_text="README and SHA256SUMS expect the portal-made key")
    crl_number = models.BigIntegerField(default=0, help_text="the CRL shipped in crls/ca.crl (0: none yet)")
    created_at = models.DateTimeField(auto_now_add=True)
    checked_at = models.DateTimeField(help_text="last time a render found this version current")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["peer", "version"], name="one_bundle_version")]
        indexes = [models.Index(fields=["peer", "-version"])]

    def __str__(self) -> str:
        return f"{self.peer.fqdn} v{self.version}"

    def text_of(self, path: str) -> str | None:
        for entry in self.files:
            if entry["path"] == path:
                return str(entry["text"])
        return None


class BundleDownload(models.Model):
    """Who took which bytes of which bundle, when and from where (also in the audit log)."""

    class Via(models.TextChoices):
        PAGE = "page", "peer page"
        API = "api", "API"
        LINK = "link", "one-time link"

    bundle = models.ForeignKey(Bundle, on_delete=models.PROTECT, related_name="downloads")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(auto_now_add=True)
    address = models.GenericIPAddressField(null=True, blank=True)
    sha256 = models.CharField(max_length=64)
    via = models.CharField(max_length=8, choices=Via.choices)
    with_key = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"{self.bundle} by {self.user_id} at {self.at:%Y-%m-%d %H:%M}"


class DownloadLink(models.Model):
    """A one-time, expiring link to a peer's bundle, made by a user who may take it (T24).

    The token is the credential: whoever holds it redeems the link once, without signing in (a
    headless peer with curl), and the download is recorded as its maker's, from the redeeming
    address. Only the SHA-256 of the 256-bit token is stored; redemption is one conditional UPDATE.
    A portal-made key goes with the link only when its maker said so (``with_key``).
    """

    peer = models.ForeignKey(Peer, on_delete=models.CASCADE, related_name="download_links")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    with_key = models.BooleanField(
        default=False, help_text="its maker chose to send the portal-made key (not delivered yet) with it"
    )

    def __str__(self) -> str:
        return f"link for {self.peer_id} ({'used' if self.used_at else 'open'})"


class RenderClaim(models.Model):
    """A render queued for a peer and not started yet, so sweeps during a backlog do not queue it twice.

    Cleared when the render starts; a claim older than the requeue interval is ignored (lost message).
    """

    peer = models.OneToOneField(Peer, on_delete=models.CASCADE, primary_key=True, related_name="+")
    queued_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"render claim {self.peer_id}"


RENDER_REASON_MAX = 300  # what a failure record keeps of the reason (it is shown on pages and in the API)


class RenderFailure(models.Model):
    """A peer whose bundle could not be made, or whom the gateway's files leave out, and why.

    One row per failing peer, so one failure never holds up another peer's bundle: the render that
    fails writes it (``bundle.render_failed`` in the audit log when the peer starts failing or the
    reason changes), the first render that succeeds deletes it (``bundle.render_recovered``). The
    gateway's render marks ``left_out`` the issued clients whose stored values its files cannot carry,
    and clears that mark once they can. The sweeper retries a failing peer when its inputs change
    (the site-profile generation, the CRL, the peer's own values, for the gateway its issued clients)
    or after ``retry_at``, an interval that doubles with each attempt (``bundles.services.render``).
    """

    peer = models.OneToOneField(Peer, on_delete=models.CASCADE, primary_key=True, related_name="render_failure")
    reason = models.CharField(max_length=RENDER_REASON_MAX, help_text="user-safe: shown on pages and in the API")
    left_out = models.BooleanField(default=False, help_text="the gateway's files leave this client out")
    first_at = models.DateTimeField(help_text="when the peer started failing")
    at = models.DateTimeField(help_text="the last failed attempt")
    attempts = models.PositiveIntegerField(default=1)
    retry_at = models.DateTimeField(help_text="the sweeper retries after this, or sooner when an input changes")
    site_generation = models.PositiveIntegerField(help_text="the site-profile generation of the last attempt")
    crl_number = models.BigIntegerField(default=0, help_text="the CRL of the last attempt")
    inputs = models.CharField(
        max_length=64, blank=True, help_text="digest of the peer's own values (the gateway's: and its clients') tried"
    )

    def __str__(self) -> str:
        return f"render failure {self.peer_id}: {self.reason}"

    @property
    def message(self) -> str:
        return f"Bundle could not be made: {self.reason}"


class SyncToken(models.Model):
    """The gateway's credential for bin/ca-portal-sync: it fetches that gateway's bundle and nothing else.

    Only the SHA-256 of the token is stored (it is shown once, like a one-time link's); one live token
    per gateway. Each use records when and from where the gateway asked and which version it runs
    (the version it named in If-None-Match): telemetry, not state, so not audited; what it was sent
    is (``bundle.synced``). Bound to the gateway's FQDN, so it survives the gateway's renewal.
    """

    peer = models.ForeignKey(Peer, on_delete=models.CASCADE, related_name="sync_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=8, help_text="the token's last characters, to tell tokens apart")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_address = models.GenericIPAddressField(null=True, blank=True)
    served_version = models.PositiveIntegerField(null=True, blank=True, help_text="the last version sent")
    served_sha256 = models.CharField(max_length=64, blank=True)
    running_version = models.PositiveIntegerField(null=True, blank=True, help_text="the version installed")
    running_sha256 = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["peer"], condition=models.Q(revoked_at__isnull=True), name="one_live_sync_token_per_peer"
            )
        ]

    def __str__(self) -> str:
        return f"sync token …{self.hint} for {self.peer_id} ({'revoked' if self.revoked_at else 'live'})"
