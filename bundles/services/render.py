"""Rendering: a peer's files from the site-wide inputs, a new version only when anything changed.

Rendering runs on the ``render`` queue (``bundles.tasks``); everything here is safe to call twice.
Staleness is derived, not remembered: a peer's latest bundle is stale when it was rendered from an
older site-profile generation, for another certificate, or (the gateway) for another set of issued
peers (``bundles.selectors.stale_peer_ids``; the sweeper queues what it finds).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from authority.audit import audit_record_many
from bundles.archive import build_zip
from bundles.models import Bundle, BundleDownload, RenderClaim
from bundles.renderers import engine
from bundles.renderers.bundle import finish, render_files
from bundles.renderers.spec import SpecRejected
from bundles.selectors import IssuedClients, RenderContext, issued_clients, render_context
from bundles.services.inputs import peer_spec, site_spec, template_environment
from enrollment.models import Peer, PortalKey

log = logging.getLogger(__name__)

KEEP_VERSIONS = 5  # versions kept per peer besides downloaded ones (the bundle page compares the newest two)


@dataclass(frozen=True)
class RenderOutcome:
    bundle: Bundle | None
    created: bool
    reason: str = ""


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
    environment = template_environment()
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
