"""The render sweeper: it queues a render for every stale peer (the gateway first), in batches.

Staleness is derived, not remembered (``bundles.selectors.stale_peer_ids``), so a lost message
costs a delay, never a bundle. Causes wake the sweeper through a debounced flag
(``authority.wakeups``), and beat runs it anyway. A stale peer whose last render failed
(``RenderFailure``) rests until an input changes or its retry time comes (``_backing_off``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from authority.revocation import current_crl
from authority.wakeups import wake, wake_done
from bundles import selectors, task_names
from bundles.models import RenderClaim, RenderFailure, SiteProfile
from bundles.services.inputs import peer_inputs
from core.tasks import send_by_name

RENDER_BATCH = 25  # peers per render task: small enough to spread over processes, large enough to amortise
REQUEUE_AFTER = timedelta(seconds=60)


def bundles_render_stale(*, limit: int = 10_000) -> int:
    """The sweeper: queue a render for every stale peer (the gateway first). Returns how many were queued."""
    wake_done(task_names.BUNDLES_RENDER_STALE)  # before looking: what is committed from now on wakes us again

    ids = selectors.stale_peer_ids(limit=limit)
    profile = selectors.profile_get()
    gateway = selectors.gateway_peer(profile)
    gateway_id = gateway.pk if gateway is not None else None
    now = timezone.now()
    resting = _backing_off(ids, profile, gateway_id, now)
    ids = [peer_id for peer_id in ids if peer_id not in resting]
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


def _backing_off(ids: list[int], profile: SiteProfile, gateway_id: int | None, now: datetime) -> set[int]:
    """The stale peers whose last render failed and that wait for their retry (``RenderFailure.retry_at``).

    Not retried before then unless an input changed since: the site profile, the CRL, the peer's own
    values or, for the gateway, its issued clients. So a peer that cannot be rendered costs a render
    now and then, not one at every sweep, and is tried at once when it may have been fixed.
    """
    if not ids:
        return set()
    crl = current_crl()
    resting = RenderFailure.objects.filter(
        peer_id__in=ids,
        retry_at__gt=now,
        site_generation=profile.generation,
        crl_number=crl.number if crl is not None else 0,
    ).values_list("peer_id", "inputs", "peer__fqdn", "peer__networks", "peer__address")
    waiting = set()
    for peer_id, inputs, fqdn, networks, address in resting:
        clients = selectors.issued_clients().digest if peer_id == gateway_id else ""
        if inputs == peer_inputs(fqdn, networks, address, clients):
            waiting.add(peer_id)
    return waiting


def _enqueue_batch(peer_ids: list[int]) -> bool:
    return send_by_name(task_names.BUNDLES_RENDER_BATCH, peer_ids)


def bundles_sweep_soon(**_signal: object) -> None:
    """Ask a render worker to run the sweeper now (after a profile change, an issuance, a revocation
    or a new CRL; ``BundlesConfig.ready`` subscribes it to the authority app's signals)."""
    wake(task_names.BUNDLES_RENDER_STALE)  # debounced: a queued run sees this change too
