"""Rendering: a peer's files from the site-wide inputs, a new version only when anything changed.

Rendering runs on the ``render`` queue (``bundles.tasks``); everything here is safe to call twice.
Staleness is derived, not remembered: a peer's latest bundle is stale when it was rendered from an
older site-profile generation, for another certificate, or (the gateway) for another set of issued
peers (``bundles.selectors.stale_peer_ids``; the sweeper queues what it finds).

A peer whose spec or render fails never stops the others: it gets a ``RenderFailure`` row (the reason,
the attempts, when to retry) and one ``bundle.render_failed`` event, the rest of the batch renders and
commits, and the first render that succeeds deletes the row (``bundle.render_recovered``). The gateway's
files leave out the issued clients whose stored values the renderers refuse and mark them ``left_out``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from authority.audit import audit_record_many
from bundles.archive import BundleFile, build_zip
from bundles.models import RENDER_REASON_MAX, Bundle, BundleDownload, RenderClaim, RenderFailure, SiteProfile
from bundles.renderers import engine
from bundles.renderers.bundle import finish, render_files
from bundles.renderers.spec import PeerSpec, Site, SpecRejected
from bundles.selectors import IssuedClients, RenderContext, issued_clients, render_context
from bundles.services.inputs import peer_inputs, peer_spec, site_spec, template_environment
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


def _attempt(
    environment: Any, site: Site | None, site_problem: str, peer: Peer, profile: SiteProfile, *, key_from_portal: bool
) -> tuple[PeerSpec, list[BundleFile]] | str:
    """One peer's spec and files, or the user-safe reason they could not be made. A refused value, a
    failing template or a bug in a renderer fails this peer only; the batch goes on (review F1)."""
    try:
        if site is None:
            raise _SiteRejected(site_problem)
        spec = peer_spec(peer, profile, key_from_portal=key_from_portal)
        return spec, render_files(environment, site, spec)
    except (SpecRejected, engine.RenderError, _SiteRejected) as exc:
        log.error("bundle for peer %s not rendered: %s", peer.pk, exc)
        return _reason(exc)
    except DatabaseError:
        raise
    except Exception:  # a bug in a renderer or an override: this peer fails, the others render
        log.exception("bundle for peer %s not rendered", peer.pk)
        return INTERNAL_ERROR


def _render_many(peer_ids: list[int], context: RenderContext) -> dict[int, RenderOutcome]:
    profile, ca, gateway, crl = context.profile, context.ca, context.gateway, context.crl
    if ca is None:
        return dict.fromkeys(peer_ids, RenderOutcome(None, False, "there is no CA yet"))
    if gateway is None:
        return dict.fromkeys(peer_ids, RenderOutcome(None, False, "the CA admins have not set up the VPN gateway yet"))
    outcomes = dict.fromkeys(peer_ids, RenderOutcome(None, False, "the peer has no issued certificate"))
    # Only the gateway's files name the issued clients (KeyNote remote_id list, iked and swanctl
    # policies per client gateway); a client's bundle never does, so it skips that O(clients) work.
    # A client whose stored values the renderers refuse is left out of them (``clients.refused``).
    clients = issued_clients() if gateway.pk in peer_ids else IssuedClients((), ())
    crl_number = crl.number if crl is not None else 0
    site: Site | None = None
    site_problem = ""
    try:
        site = site_spec(profile, ca, gateway, clients, crl)
    except SpecRejected as exc:  # a site-wide value: every peer of the batch fails with it
        log.error("bundles not rendered: %s", exc)
        site_problem = _reason(exc)
    environment = template_environment()
    with transaction.atomic():
        peers = list(
            Peer.objects.select_for_update(of=("self",))
            .select_related("certificate_request__certificate", "render_failure")
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
        failures = _Failures(now, profile.generation, crl_number)
        for peer in peers:
            if peer.kind == Peer.Kind.SERVER and peer.pk != gateway.pk:
                outcomes[peer.pk] = RenderOutcome(
                    None, False, "this server peer is not the site's gateway (see the site profile)"
                )
                continue
            failures.known(peer)
            digest = clients.digest if peer.pk == gateway.pk else ""
            inputs = peer_inputs(peer.fqdn, peer.networks, peer.address, digest)
            attempt = _attempt(environment, site, site_problem, peer, profile, key_from_portal=peer.pk in keyed)
            if isinstance(attempt, str):
                outcomes[peer.pk] = RenderOutcome(None, False, f"could not render: {attempt}")
                failures.failed(peer.pk, attempt, inputs=inputs)
                continue
            spec, files = attempt
            assert site is not None  # without a site, _attempt fails every peer
            failures.succeeded(peer.pk)
            stored = [{"path": f.path, "mode": f.mode, "text": f.content.decode("utf-8")} for f in files]
            certificate = peer.certificate_request.certificate  # type: ignore[union-attr]
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
        if gateway.pk in peer_ids:
            failures.left_out(clients)
        _store(checked, made, failures)
    return outcomes


def _store(checked: list[Bundle], made: list[tuple[Bundle, list[str]]], failures: _Failures) -> None:
    """The batch's writes, one statement per kind of row: unchanged bundles re-stamped, new versions,
    their audit events (and the failures' and recoveries'), then the pruning of old versions."""
    if checked:
        Bundle.objects.bulk_update(
            checked, ["site_generation", "certificate", "peers_digest", "lists_key", "crl_number", "checked_at"]
        )
    events = [
        (
            "bundle.rendered",
            "render",
            f"peer:{bundle.peer_id}",
            {"version": bundle.version, "sha256": bundle.sha256, "changed": changed},
        )
        for bundle, changed in made
    ]
    events += failures.write()  # nothing unless a peer fails, or recovers
    if made:
        Bundle.objects.bulk_create([bundle for bundle, _ in made])
    if events:
        audit_record_many(events)
    if made:
        _versions_prune({bundle.peer_id: bundle.version for bundle, _ in made})


INTERNAL_ERROR = "an internal error in the renderer (the render worker's log has the details)"
RETRY_FIRST = timedelta(minutes=2)  # a failing peer is retried after this, then twice as long each time
RETRY_MAX = timedelta(hours=1)


class _SiteRejected(Exception):
    """A site-wide input the renderers refuse: every peer of the batch fails with it."""


def _reason(exc: Exception) -> str:
    """A failure's reason as pages, the API and the audit log show it: one line, capped."""
    return _cap(str(exc)) or type(exc).__name__


def _cap(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= RENDER_REASON_MAX else text[: RENDER_REASON_MAX - 1] + "…"


def retry_delay(attempts: int) -> timedelta:
    """How long the sweeper leaves a peer alone after its ``attempts``-th failure (unless an input changes)."""
    delay: timedelta = RETRY_FIRST * (2 ** min(max(attempts - 1, 0), 16))
    return min(delay, RETRY_MAX)


_FAILURE_FIELDS = [f.name for f in RenderFailure._meta.concrete_fields if not f.primary_key]


@dataclass
class _Failing:
    reason: str
    left_out: bool
    inputs: str  # "" for the gateway's mark alone: the peer's own render is then not held back
    attempted: bool  # the peer's own render failed in this batch (not only the gateway's mark)


class _Failures:
    """The render failures a batch records and clears, written with a statement or two, and only when
    a peer fails or recovers (the exception path: a batch without either costs nothing more)."""

    def __init__(self, now: datetime, generation: int, crl_number: int) -> None:
        self.now, self.generation, self.crl_number = now, generation, crl_number
        self.existing: dict[int, RenderFailure] = {}
        self.failing: dict[int, _Failing] = {}
        self.recovered: dict[int, RenderFailure] = {}

    def known(self, peer: Peer) -> None:
        """Remember the peer's failure record (read with the peer's lock, ``select_related``)."""
        old: RenderFailure | None = getattr(peer, "render_failure", None)
        if old is not None:
            self.existing[peer.pk] = old

    def failed(self, peer_id: int, reason: str, *, inputs: str) -> None:
        """The peer's own render failed; a mark the gateway's render left on it stays."""
        old = self.existing.get(peer_id)
        self.failing[peer_id] = _Failing(reason, old is not None and old.left_out, inputs, attempted=True)

    def succeeded(self, peer_id: int) -> None:
        old = self.existing.get(peer_id)
        if old is not None:
            self.recovered[peer_id] = old

    def left_out(self, clients: IssuedClients) -> None:
        """After the gateway's render: mark the issued clients its files leave out, and clear the mark
        of those they name again (one read of the marked and the refused)."""
        refused = {client.peer_id: client for client in clients.refused}
        for row in RenderFailure.objects.filter(Q(peer_id__in=list(refused)) | Q(left_out=True)):
            self.existing.setdefault(row.peer_id, row)
            if row.peer_id not in refused and row.peer_id not in self.failing:
                # Named again: its values pass. If its own bundle still fails, its next render says so.
                self.recovered[row.peer_id] = row
        for peer_id, entry in self.failing.items():
            entry.left_out = peer_id in refused
        for peer_id, client in refused.items():
            if peer_id not in self.failing:
                self.failing[peer_id] = _Failing(_cap(client.reason), True, "", attempted=False)

    def write(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """Store the failures, delete the recovered records; returns their audit events."""
        events: list[tuple[str, str, str, dict[str, Any]]] = []
        rows = []
        for peer_id, entry in sorted(self.failing.items()):
            old = self.existing.get(peer_id)
            if old is not None and not entry.attempted:  # only the gateway's mark: the attempts stay
                row = RenderFailure(**{f.attname: getattr(old, f.attname) for f in RenderFailure._meta.concrete_fields})
                row.reason, row.left_out = entry.reason, entry.left_out
            else:  # a first mark by the gateway alone is no attempt of the peer's own render yet
                attempts = (old.attempts if old is not None else 0) + (1 if entry.attempted else 0)
                row = RenderFailure(
                    peer_id=peer_id,
                    reason=entry.reason,
                    left_out=entry.left_out,
                    first_at=old.first_at if old is not None else self.now,
                    at=self.now,
                    attempts=attempts,
                    retry_at=self.now + retry_delay(attempts),
                    site_generation=self.generation,
                    crl_number=self.crl_number,
                    inputs=entry.inputs,
                )
            rows.append(row)
            if old is None or (old.reason, old.left_out) != (row.reason, row.left_out):
                data = {"reason": row.reason, "left_out": row.left_out}
                events.append(("bundle.render_failed", "render", f"peer:{peer_id}", data))
        if rows:
            RenderFailure.objects.bulk_create(
                rows,
                update_conflicts=True,
                unique_fields=["peer"],
                update_fields=_FAILURE_FIELDS,
            )
        if self.recovered:
            RenderFailure.objects.filter(peer_id__in=list(self.recovered)).delete()
            events += [
                (
                    "bundle.render_recovered",
                    "render",
                    f"peer:{peer_id}",
                    {"after": old.reason, "attempts": old.attempts, "since": old.first_at.isoformat()},
                )
                for peer_id, old in sorted(self.recovered.items())
            ]
        return events


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
