"""The write path for bundles: the site profile, rendering, downloads and one-time links.

Rendering runs on the ``render`` queue (``bundles.tasks``); everything here is safe to call twice.
Staleness is derived, not remembered: a peer's latest bundle is stale when it was rendered from an
older site-profile generation, for another certificate, or (the gateway) for another set of issued
peers. The sweeper finds those with one query, so a lost message costs a delay, never a bundle.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from authority.audit import audit_record, audit_record_many
from authority.models import CertificateAuthority, CertificateRequest, Crl
from authority.revocation import current_crl
from authority.services import active_ca
from authority.wakeups import wake, wake_done
from bundles import task_names
from bundles.archive import BundleFile, build_zip
from bundles.models import Bundle, BundleDownload, DownloadLink, RenderClaim, SiteProfile
from bundles.renderers import engine
from bundles.renderers.bundle import finish, render_files
from bundles.renderers.spec import (
    Gateway,
    PeerSpec,
    Service,
    Site,
    SpecRejected,
    suite_for,
    validate_ifname,
    validate_ipv4,
)
from core.errors import ServiceError
from core.roles import is_ca_admin
from core.tasks import send_by_name
from enrollment.models import Peer, PortalKey

log = logging.getLogger(__name__)

LINK_TTL = timedelta(minutes=10)
RENDER_BATCH = 25  # peers per render task: small enough to spread over processes, large enough to amortise
REQUEUE_AFTER = timedelta(seconds=60)
KEEP_VERSIONS = 5  # versions kept per peer besides downloaded ones (the bundle page compares the newest two)


class BundleError(ServiceError):
    """Refused input or action; ``status`` is the HTTP status, ``field`` the input at fault."""


# --- site profile ----------------------------------------------------------------------------


def profile_get() -> SiteProfile:
    profile, _ = SiteProfile.objects.get_or_create(pk=1)
    return profile


def _clean_services(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cleaned = []
    for item in raw:
        try:
            ports = tuple(int(p) for p in item.get("ports", ()))
            service = Service(
                name=str(item.get("name", "")),
                address=str(item.get("address", "")),
                protocol=str(item.get("protocol", "")),
                ports=ports,
            )
        except (TypeError, ValueError) as exc:
            field = exc.field if isinstance(exc, SpecRejected) else "services"
            raise BundleError(f"service {str(item.get('name', ''))[:30]!r}: {exc}", field=field) from None
        cleaned.append(
            {"name": service.name, "address": service.address, "protocol": service.protocol, "ports": list(ports)}
        )
    return cleaned


def profile_update(*, actor: User, **changes: Any) -> SiteProfile:
    """Change site-wide bundle inputs; every bundle becomes stale and is rendered again by the sweeper."""
    allowed = {
        "gateway_id", "ext_if", "int_if", "client_ext_if", "client_int_if", "suite", "legacy_allowed",
        "remote_id_check", "services", "admin_hosts",
    }  # fmt: skip
    unknown = set(changes) - allowed
    if unknown:
        raise BundleError(f"unknown settings: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        profile = SiteProfile.objects.select_for_update().get_or_create(pk=1)[0]
        before = _profile_facts(profile)
        for name, value in changes.items():
            setattr(profile, name, value)
        try:
            for name in ("ext_if", "int_if", "client_ext_if", "client_int_if"):
                validate_ifname(getattr(profile, name), field=name)
            if profile.ext_if == profile.int_if:
                raise SpecRejected("the gateway's interfaces must differ", field="int_if")
            if profile.client_ext_if == profile.client_int_if:
                raise SpecRejected("the clients' interfaces must differ", field="client_int_if")
            suite_for(profile.suite, legacy_allowed=profile.legacy_allowed)
            profile.admin_hosts = sorted(
                {validate_ipv4(str(h), field="admin_hosts") for h in profile.admin_hosts},
                key=lambda a: tuple(int(p) for p in a.split(".")),
            )
        except SpecRejected as exc:
            raise BundleError(str(exc), field=exc.field) from None
        profile.services = _clean_services(list(profile.services))
        if profile.gateway_id is not None:
            gateway = Peer.objects.filter(pk=profile.gateway_id, kind=Peer.Kind.SERVER).first()
            if gateway is None:
                raise BundleError("the gateway must be a peer of kind server", field="gateway")
        after = _profile_facts(profile)
        if after == before:
            return profile
        profile.generation = F("generation") + 1
        profile.updated_by = actor
        profile.save()
        profile.refresh_from_db()
        changed = {k: after[k] for k in after if after[k] != before[k]}
        audit_record("site_profile.updated", actor=actor.get_username(), target="site_profile", changed=changed)
        transaction.on_commit(bundles_sweep_soon)
    return profile


def _profile_facts(profile: SiteProfile) -> dict[str, Any]:
    return {
        "gateway": profile.gateway_id,
        "ext_if": profile.ext_if,
        "int_if": profile.int_if,
        "client_ext_if": profile.client_ext_if,
        "client_int_if": profile.client_int_if,
        "suite": profile.suite,
        "legacy_allowed": profile.legacy_allowed,
        "remote_id_check": profile.remote_id_check,
        "services": list(profile.services),
        "admin_hosts": list(profile.admin_hosts),
    }


# --- what a bundle is rendered from ----------------------------------------------------------


def issued_peers() -> QuerySet[Peer]:
    return Peer.objects.filter(
        decision=Peer.Decision.APPROVED,
        certificate_request__status=CertificateRequest.Status.ISSUED,
        certificate_request__certificate__revoked_at__isnull=True,
    )


def gateway_peer(profile: SiteProfile) -> Peer | None:
    """The profile's gateway, or the only issued server peer when the profile names none."""
    servers = issued_peers().filter(kind=Peer.Kind.SERVER).select_related("certificate_request__certificate")
    if profile.gateway_id is not None:
        # The chosen gateway, or, once it has been renewed and superseded, its newest live successor.
        wanted = profile.gateway_id
        for _ in range(20):
            chosen = servers.filter(pk=wanted).first()
            if chosen is not None:
                return chosen
            successor = Peer.objects.filter(renews_id=wanted).order_by("-pk").values_list("pk", flat=True).first()
            if successor is None:
                return None
            wanted = successor
        return None
    found = list(servers.order_by("pk")[:3])
    if len({server.fqdn for server in found}) != 1:
        return None
    return found[0]  # one gateway; during its renewal, the old one until the new one supersedes it


@dataclass(frozen=True)
class IssuedClients:
    """What the gateway's files say about the issued clients: their FQDNs and their networks."""

    fqdns: tuple[str, ...]
    networks: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def digest(self) -> str:
        lines = [*self.fqdns, *(f"{fqdn} {' '.join(nets)}" for fqdn, nets in self.networks)]
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def issued_clients() -> IssuedClients:
    rows = issued_peers().filter(kind=Peer.Kind.CLIENT).order_by("fqdn", "pk").values_list("fqdn", "networks")
    fqdns = sorted({fqdn for fqdn, _ in rows})
    # During a renewal the old and the new peer are both issued: one entry per FQDN (the newest).
    by_fqdn = {fqdn: tuple(nets) for fqdn, nets in rows}
    networks = tuple((fqdn, nets) for fqdn, nets in sorted(by_fqdn.items()) if nets)
    return IssuedClients(tuple(fqdns), networks)


def issued_client_fqdns() -> list[str]:
    return list(issued_clients().fqdns)


def _ca_der_b64(ca: CertificateAuthority) -> str:
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def site_spec(
    profile: SiteProfile, ca: CertificateAuthority, gateway: Peer, clients: IssuedClients, crl: Crl | None = None
) -> Site:
    suite = suite_for(profile.suite, legacy_allowed=profile.legacy_allowed)
    return Site(
        ca_name=ca.common_name[:64],
        ca_cert_pem=ca.certificate_pem,
        ca_cert_der_b64=_ca_der_b64(ca),
        gateway=Gateway(
            fqdn=gateway.fqdn,
            address=str(gateway.address),
            networks=tuple(gateway.networks),
            ext_if=profile.ext_if,
            int_if=profile.int_if,
        ),
        suite=suite,
        services=tuple(
            Service(name=s["name"], address=s["address"], protocol=s["protocol"], ports=tuple(s["ports"]))
            for s in profile.services
        ),
        admin_hosts=tuple(profile.admin_hosts),
        remote_id_check=profile.remote_id_check,
        issued_clients=clients.fqdns,
        client_networks=clients.networks,
        portal_url=settings.SITE_URL,
        crl_pem=crl.pem if crl is not None else "",
        crl_url=settings.CA_CRL_URL,  # bin/ca-portal-refresh and bin/ca-portal-sync (issue 16)
        refresh_hours=settings.CRL_REFRESH_HOURS,
        sync_minutes=settings.GATEWAY_SYNC_MINUTES,
    )


def peer_spec(peer: Peer, profile: SiteProfile, *, key_from_portal: bool) -> PeerSpec:
    """The peer's side of a render; ``key_from_portal``: a portal-made key awaits its first download."""
    certificate = peer.certificate_request.certificate  # type: ignore[union-attr]
    is_gateway = peer.kind == Peer.Kind.SERVER
    return PeerSpec(
        fqdn=peer.fqdn,
        kind=peer.kind,
        cert_pem=certificate.pem,
        networks=tuple(peer.networks),
        address=str(peer.address) if peer.address else None,
        ext_if=profile.ext_if if is_gateway else profile.client_ext_if,
        int_if=profile.int_if if is_gateway else (profile.client_int_if if peer.networks else None),
        key_from_portal=key_from_portal,
    )


def _environment() -> Any:
    return engine.environment([settings.CONFIG_TEMPLATE_OVERRIDES])


# --- rendering -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderOutcome:
    bundle: Bundle | None
    created: bool
    reason: str = ""


@dataclass(frozen=True)
class RenderContext:
    """The site-wide inputs of a render, read once per task (a batch shares them)."""

    profile: SiteProfile
    ca: CertificateAuthority | None
    gateway: Peer | None
    crl: Crl | None


def render_context() -> RenderContext:
    profile = profile_get()
    ca = active_ca()
    return RenderContext(profile, ca, gateway_peer(profile), current_crl(ca) if ca is not None else None)


def bundle_render(*, peer_id: int) -> RenderOutcome:
    """Render the peer's files; store a new version only if anything changed. Safe to run twice."""
    RenderClaim.objects.filter(peer_id=peer_id).update(queued_at=None)  # changes from now on queue again
    return _render_one(peer_id, render_context())


def bundles_render_batch(*, peer_ids: list[int]) -> int:
    """Render several peers in one transaction with one read of the site-wide inputs (the sweeper's
    unit of work): the peers are locked, their latest versions and portal keys read, and the new
    versions and their audit events written, each with one statement for the whole batch.

    Returns how many new versions were made.
    """
    RenderClaim.objects.filter(peer_id__in=peer_ids).update(queued_at=None)
    outcomes = _render_many(peer_ids, render_context())
    return sum(1 for outcome in outcomes.values() if outcome.created)


def _render_one(peer_id: int, context: RenderContext) -> RenderOutcome:
    return _render_many([peer_id], context)[peer_id]


def _render_many(peer_ids: list[int], context: RenderContext) -> dict[int, RenderOutcome]:
    profile, ca, gateway, crl = context.profile, context.ca, context.gateway, context.crl
    if ca is None:
        return dict.fromkeys(peer_ids, RenderOutcome(None, False, "there is no CA yet"))
    if gateway is None:
        return dict.fromkeys(peer_ids, RenderOutcome(None, False, "the CA admins have not set up the VPN gateway yet"))
    outcomes = dict.fromkeys(peer_ids, RenderOutcome(None, False, "the peer has no issued certificate"))
    # Only the gateway's files name the issued clients (KeyNote remote_id list, iked and swanctl
    # policies per client gateway); a client's bundle never does, so it skips that O(clients) work.
    clients = issued_clients() if gateway.pk in peer_ids else IssuedClients((), ())
    crl_number = crl.number if crl is not None else 0
    try:
        site = site_spec(profile, ca, gateway, clients, crl)
    except SpecRejected as exc:
        log.error("bundles not rendered: %s", exc)
        return dict.fromkeys(peer_ids, RenderOutcome(None, False, f"could not render: {exc}"))
    environment = _environment()
    with transaction.atomic():
        peers = list(
            Peer.objects.select_for_update(of=("self",))
            .select_related("certificate_request__certificate")
            .filter(pk__in=peer_ids)
            .order_by("pk")  # one lock order for every batch
        )
        peers = [peer for peer in peers if peer.status == "issued"]
        keyed = set(
            PortalKey.objects.filter(peer__in=peers, destroyed_at__isnull=True)
            .exclude(encrypted_pem="")
            .values_list("peer_id", flat=True)
        )
        newer = Bundle.objects.filter(peer=OuterRef("peer"), version__gt=OuterRef("version"))
        latest = {b.peer_id: b for b in Bundle.objects.filter(peer__in=peers).exclude(Exists(newer))}
        now = timezone.now()
        checked: list[Bundle] = []
        made: list[tuple[Bundle, list[str]]] = []
        for peer in peers:
            if peer.kind == Peer.Kind.SERVER and peer.pk != gateway.pk:
                outcomes[peer.pk] = RenderOutcome(
                    None, False, "this server peer is not the site's gateway (see the site profile)"
                )
                continue
            try:
                spec = peer_spec(peer, profile, key_from_portal=peer.pk in keyed)
                files = render_files(environment, site, spec)
            except (SpecRejected, engine.RenderError) as exc:
                log.error("bundle for peer %s not rendered: %s", peer.pk, exc)
                outcomes[peer.pk] = RenderOutcome(None, False, f"could not render: {exc}")
                continue
            stored = [{"path": f.path, "mode": f.mode, "text": f.content.decode("utf-8")} for f in files]
            certificate = peer.certificate_request.certificate  # type: ignore[union-attr]
            digest = clients.digest if peer.pk == gateway.pk else ""
            previous = latest.get(peer.pk)
            if previous is not None and previous.files == stored:
                previous.site_generation, previous.certificate = profile.generation, certificate
                previous.peers_digest, previous.lists_key = digest, spec.portal_made_key
                previous.crl_number, previous.checked_at = crl_number, now
                checked.append(previous)
                outcomes[peer.pk] = RenderOutcome(previous, False)
                continue
            data = build_zip(peer.fqdn, finish(files))
            bundle = Bundle(
                peer=peer,
                version=(previous.version + 1) if previous is not None else 1,
                files=stored,
                sha256=hashlib.sha256(data).hexdigest(),
                certificate=certificate,
                site_generation=profile.generation,
                peers_digest=digest,
                suite=site.suite.key,
                legacy=site.legacy,
                lists_key=spec.portal_made_key,
                crl_number=crl_number,
                checked_at=now,
            )
            made.append((bundle, _changed_paths(previous, bundle)))
            outcomes[peer.pk] = RenderOutcome(bundle, True)
        if checked:
            Bundle.objects.bulk_update(
                checked, ["site_generation", "certificate", "peers_digest", "lists_key", "crl_number", "checked_at"]
            )
        if made:
            Bundle.objects.bulk_create([bundle for bundle, _ in made])
            audit_record_many(
                [
                    (
                        "bundle.rendered",
                        "render",
                        f"peer:{bundle.peer_id}",
                        {"version": bundle.version, "sha256": bundle.sha256, "changed": changed},
                    )
                    for bundle, changed in made
                ]
            )
            _versions_prune({bundle.peer_id: bundle.version for bundle, _ in made})
    return outcomes


def _versions_prune(latest: dict[int, int]) -> int:
    """Drop the versions older than the newest KEEP_VERSIONS that nobody downloaded.

    Every version stores its files whole, and the gateway's hold every issued client (its remote_id
    list, its iked and swanctl policies: about 600 KB at 1,000 clients), with a new version at each
    issuance: kept forever, that grows with the square of the site. A downloaded version is kept
    (its download row points at it); what every version contained stays in the audit log (its
    number, sha256 and changed files).
    """
    old = Q()
    for peer_id, version in latest.items():
        if version > KEEP_VERSIONS:
            old |= Q(peer_id=peer_id, version__lte=version - KEEP_VERSIONS)
    if not old:
        return 0
    doomed = Bundle.objects.filter(old).exclude(Exists(BundleDownload.objects.filter(bundle=OuterRef("pk"))))
    deleted, _ = doomed.delete()
    return deleted


def _changed_paths(old: Bundle | None, new: Bundle) -> list[str]:
    before = {e["path"]: e["text"] for e in old.files} if old is not None else {}
    after = {e["path"]: e["text"] for e in new.files}
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def stale_peer_ids(*, limit: int = 10_000) -> list[int]:
    """Issued peers whose latest bundle is missing or rendered from inputs that have changed since."""
    profile = profile_get()
    gateway = gateway_peer(profile)
    if gateway is None or active_ca() is None:
        return []
    latest = Bundle.objects.filter(peer=OuterRef("pk")).order_by("-version")
    peers = (
        issued_peers()
        .exclude(Q(kind=Peer.Kind.SERVER) & ~Q(pk=gateway.pk))
        .annotate(
            bundle_generation=Subquery(latest.values("site_generation")[:1]),
            bundle_certificate=Subquery(latest.values("certificate_id")[:1]),
            bundle_digest=Subquery(latest.values("peers_digest")[:1]),
            bundle_lists_key=Subquery(latest.values("lists_key")[:1]),
            bundle_crl=Subquery(latest.values("crl_number")[:1]),
        )
    )
    stale = Q(bundle_generation__isnull=True) | Q(bundle_generation__lt=profile.generation)
    # The README of a bundle that promised the portal-made key must change once the key is gone.
    stale |= Q(bundle_lists_key=True, portal_key__destroyed_at__isnull=False)
    crl = current_crl()
    if crl is not None:  # every bundle ships the newest CRL in isakmpd/crls/ca.crl
        stale |= Q(bundle_crl__lt=crl.number)
    stale |= ~Q(bundle_certificate=F("certificate_request__certificate__id"))
    ids = list(peers.filter(stale).order_by("pk").values_list("pk", flat=True)[:limit])
    if gateway.pk not in ids:
        current = issued_clients().digest
        if peers.filter(pk=gateway.pk).exclude(bundle_digest=current).exists():
            ids.insert(0, gateway.pk)
    elif ids[0] != gateway.pk:
        ids.remove(gateway.pk)
        ids.insert(0, gateway.pk)
    return ids


def bundles_render_stale(*, limit: int = 10_000) -> int:
    """The sweeper: queue a render for every stale peer (the gateway first). Returns how many were queued."""
    wake_done(task_names.BUNDLES_RENDER_STALE)  # before looking: what is committed from now on wakes us again

    ids = stale_peer_ids(limit=limit)
    gateway = gateway_peer(profile_get())
    gateway_id = gateway.pk if gateway is not None else None
    now = timezone.now()
    waiting = set(
        RenderClaim.objects.filter(peer_id__in=ids, queued_at__gte=now - REQUEUE_AFTER).values_list(
            "peer_id", flat=True
        )
    )
    todo = [peer_id for peer_id in ids if peer_id not in waiting]
    RenderClaim.objects.bulk_create(
        [RenderClaim(peer_id=peer_id, queued_at=now) for peer_id in todo],
        update_conflicts=True,
        unique_fields=["peer"],
        update_fields=["queued_at"],
    )
    queued = 0
    # The gateway alone (its render reads every issued client), then batches that share one read of
    # the site-wide inputs; several render processes take batches in parallel.
    head = [todo[0]] if todo and todo[0] == gateway_id else []
    rest = todo[len(head) :]
    for chunk in [head] + [rest[i : i + RENDER_BATCH] for i in range(0, len(rest), RENDER_BATCH)]:
        if chunk and _enqueue_batch(chunk):
            queued += len(chunk)
    return queued


def _enqueue_batch(peer_ids: list[int]) -> bool:
    return send_by_name(task_names.BUNDLES_RENDER_BATCH, peer_ids)


def _render_soon(peer_id: int) -> None:
    send_by_name(task_names.BUNDLE_RENDER, peer_id)


def bundles_sweep_soon(**_signal: object) -> None:
    """Ask a render worker to run the sweeper now (after a profile change, an issuance, a revocation
    or a new CRL; ``BundlesConfig.ready`` subscribes it to the authority app's signals)."""
    wake(task_names.BUNDLES_RENDER_STALE)  # debounced: a queued run sees this change too


# --- downloads -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    filename: str
    data: bytes
    sha256: str
    bundle: Bundle
    with_key: bool
    key_was_delivered_before: bool


def may_download(user: User, peer: Peer) -> bool:
    """Owners download their own peer's bundle; CA admins the gateway's (a server peer). Auditors never."""
    if peer.kind == Peer.Kind.SERVER:
        return is_ca_admin(user)
    return peer.owner_id == user.pk


def latest_bundle(peer: Peer) -> Bundle | None:
    return Bundle.objects.filter(peer=peer).order_by("-version").first()


def bundle_download(*, peer_id: int, user: User, address: str | None, via: str, release_key: bool = True) -> Download:
    """Build the zip for ``user``; the first download of a portal-made key takes the key with it.

    The encrypted key is read and destroyed in the same transaction that records the download, so
    two simultaneous downloads cannot both get it. ``release_key=False`` (API calls authenticated
    by a session cookie, which a cross-site page could trigger) leaves the key where it is.
    """
    with transaction.atomic():
        peer = Peer.objects.select_for_update(of=("self",)).filter(pk=peer_id).first()
        if peer is None:
            raise BundleError("no such peer", status=404)
        if not may_download(user, peer):
            raise BundleError("you may not download this bundle", status=403)
        bundle = latest_bundle(peer)
        if bundle is None:
            raise BundleError("the bundle is not ready yet; it is made a few seconds after issuance", status=409)
        key_pem = None
        delivered_before = False
        portal_key = PortalKey.objects.select_for_update().filter(peer=peer).first()
        if portal_key is not None:
            if portal_key.destroyed_at is not None:
                delivered_before = True
            elif release_key and portal_key.encrypted_pem:
                key_pem = portal_key.encrypted_pem
                portal_key.encrypted_pem = ""
                portal_key.destroyed_at = timezone.now()
                portal_key.save(update_fields=["encrypted_pem", "destroyed_at"])
        files = [BundleFile(path=e["path"], content=e["text"].encode("utf-8"), mode=e["mode"]) for e in bundle.files]
        data = build_zip(peer.fqdn, finish(files, key_pem=key_pem))
        digest = hashlib.sha256(data).hexdigest()
        BundleDownload.objects.create(
            bundle=bundle, user=user, address=address, sha256=digest, via=via, with_key=key_pem is not None
        )
        audit_record(
            "bundle.downloaded",
            actor=user.get_username(),
            target=f"peer:{peer.pk}",
            version=bundle.version,
            sha256=digest,
            address=address or "",
            via=via,
            with_key=key_pem is not None,
        )
        if key_pem is not None:
            audit_record("peer.key_destroyed", actor=user.get_username(), target=f"peer:{peer.pk}", reason="delivered")
            transaction.on_commit(lambda: _render_soon(peer_id))
    return Download(f"{peer.fqdn}.zip", data, digest, bundle, key_pem is not None, delivered_before)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def link_create(*, peer_id: int, user: User, now: datetime | None = None) -> tuple[str, DownloadLink]:
    """A one-time link for ``user`` to their peer's bundle; the token is returned once, stored hashed."""
    peer = Peer.objects.filter(pk=peer_id).first()
    if peer is None:
        raise BundleError("no such peer", status=404)
    if not may_download(user, peer):
        raise BundleError("you may not download this bundle", status=403)
    if latest_bundle(peer) is None:
        raise BundleError("the bundle is not ready yet", status=409)
    token = secrets.token_urlsafe(32)  # 256 bits
    created = now or timezone.now()
    with transaction.atomic():
        link = DownloadLink.objects.create(
            peer=peer, user=user, token_hash=_token_hash(token), expires_at=created + LINK_TTL
        )
        audit_record(
            "bundle.link_created",
            actor=user.get_username(),
            target=f"peer:{peer.pk}",
            link=link.pk,
            expires_at=link.expires_at.isoformat(),
        )
    return token, link


def link_state(token: str, user: User) -> DownloadLink:
    """The link for a token, for its own user only (404 otherwise); 410 when used or expired."""
    link = DownloadLink.objects.filter(token_hash=_token_hash(token), user_id=user.pk).select_related("peer").first()
    if link is None:
        raise BundleError("no such link", status=404)
    if link.used_at is not None:
        raise BundleError("this link has already been used", status=410)
    if link.expires_at <= timezone.now():
        raise BundleError("this link has expired; make a new one on the peer's page", status=410)
    return link


def link_redeem(*, token: str, user: User, address: str | None) -> Download:
    """Redeem a one-time link: one conditional UPDATE decides the single winner (T24)."""
    link = link_state(token, user)
    with transaction.atomic():
        won = DownloadLink.objects.filter(
            pk=link.pk, used_at__isnull=True, expires_at__gt=timezone.now(), user_id=user.pk
        ).update(used_at=timezone.now())
        if won != 1:
            raise BundleError("this link has already been used", status=410)
        return bundle_download(peer_id=link.peer_id, user=user, address=address, via=BundleDownload.Via.LINK)


def bundle_render_blocker(peer: Peer) -> str:
    """Why a peer has no bundle yet, in words for its page."""
    if peer.status != "issued":
        return "The bundle is made once the certificate is issued."
    profile = profile_get()
    if active_ca() is None:
        return "There is no CA yet."
    if gateway_peer(profile) is None:
        return (
            "The CA admins have not set up the VPN gateway yet (an issued server peer, chosen on the gateway page). "
            "Your bundle is made as soon as they have."
        )
    return "Your bundle is being made; this takes a few seconds."
