"""One certificate for the auditor: found by its serial, its owner, and its chain of custody."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit.selectors import normalize_serial
from authority.models import AuditEvent, Certificate, Crl
from bundles.models import BundleDownload

TIMELINE_EVENT_LIMIT = 500


def certificate_by_serial(serial: str) -> Certificate | None:
    """The certificate with its request, peer, owner and deciders, in one query."""
    normalized = normalize_serial(serial)
    if normalized is None:
        return None
    return (
        Certificate.objects.select_related(
            "ca",
            "request__requested_by",
            "request__approved_by",
            "request__peer__owner",
            "request__peer__decided_by",
        )
        .defer("der", "request__csr_pem", "request__public_key_der", "request__peer__csr_pem", "ca__certificate_pem")
        .filter(serial=normalized)
        .first()
    )


def certificate_owner(certificate: Certificate) -> str:
    """The owner of the peer it was issued for; else whoever requested it (as in the inventory)."""
    request = certificate.request
    peer = getattr(request, "peer", None)
    if peer is not None:
        return str(peer.owner.get_username())
    return str(request.requested_by.get_username()) if request.requested_by is not None else ""


@dataclass
class TimelineEntry:
    at: datetime
    kind: str  # registered | requested | approved | issued | download | revoked | crl | event
    actor: str
    what: str
    detail: str = ""
    seq: int | None = None  # the audit event that records it
    expects_event: bool = False  # a state change that should have its own audit event

    @property
    def missing_event(self) -> bool:
        return self.expects_event and self.seq is None


@dataclass
class Timeline:
    entries: list[TimelineEntry] = field(default_factory=list)
    truncated: bool = False  # more audit events for these targets than TIMELINE_EVENT_LIMIT
    targets: list[str] = field(default_factory=list)
    crl: Crl | None = None


def _actor(name: str) -> str:
    """Audit actors are "user:carol", "carol", "signer", "cli:root": show people by name."""
    return name.removeprefix("user:")


def _username(user: Any) -> str:
    return str(user.get_username()) if user is not None else ""


def _event_detail(data: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(data.items()) if value not in ("", None, [], {}))


def _take(events: list[AuditEvent], action: str, **match: Any) -> AuditEvent | None:
    """Remove and return the first event of ``action`` whose data has the ``match`` items."""
    for index, event in enumerate(events):
        data = event.data if isinstance(event.data, dict) else {}
        if event.action == action and all(data.get(key) == value for key, value in match.items()):
            return events.pop(index)
    return None


def certificate_timeline(certificate: Certificate) -> Timeline:
    """Everything that happened to a certificate, oldest first, each fact with its audit event.

    The facts come from the rows (request, peer, certificate, downloads, the CRL); each is paired
    with the audit event that recorded it, and every other audit event about the peer, the request
    or the certificate is shown too. A fact without its event is flagged for the auditor.
    Queries: the audit events, the downloads, the first CRL and its event; the certificate must
    come from ``certificate_by_serial`` (its relations are already loaded).
    """
    request = certificate.request
    peer = getattr(request, "peer", None)
    targets = [f"request:{request.pk}", f"certificate:{certificate.serial}"]
    if peer is not None:
        targets.insert(0, f"peer:{peer.pk}")
    fetched = list(AuditEvent.objects.filter(target__in=targets).order_by("seq")[: TIMELINE_EVENT_LIMIT + 1])
    timeline = Timeline(truncated=len(fetched) > TIMELINE_EVENT_LIMIT, targets=targets)
    events = fetched[:TIMELINE_EVENT_LIMIT]
    entries = timeline.entries

    def add(event: AuditEvent | None, *, expects_event: bool = True, **values: Any) -> None:
        entry = TimelineEntry(**values, seq=event.seq if event is not None else None, expects_event=expects_event)
        if event is not None and not entry.actor:
            entry.actor = _actor(event.actor)
        entries.append(entry)

    if peer is not None:
        event = _take(events, "peer.registered")
        add(
            event,
            at=peer.created_at,
            kind="registered",
            actor=_actor(event.actor) if event is not None else _username(peer.owner),
            what=f"{peer.get_kind_display()} peer {peer.fqdn} registered for {_username(peer.owner)}",
            detail=f"key: {peer.get_key_source_display()}",
        )
    event = _take(events, "certificate.requested")
    add(
        event,
        at=request.created_at,
        kind="requested",
        actor=_actor(event.actor) if event is not None else _username(request.requested_by),
        what="certificate requested",
        detail=f"{request.key_type}, {request.validity_days} days",
    )
    approver = peer.decided_by if peer is not None and peer.decided_by is not None else request.approved_by
    approved_at = peer.decided_at if peer is not None and peer.decided_at is not None else request.created_at
    if approver is not None:
        event = _take(events, "peer.approved") if peer is not None else None
        add(
            event,
            at=approved_at,
            kind="approved",
            actor=_username(approver),
            what=f"approved by {_username(approver)}",
            expects_event=peer is not None,
        )
    event = _take(events, "certificate.issued")
    add(
        event,
        at=certificate.issued_at,
        kind="issued",
        actor=_actor(event.actor) if event is not None else "signer",
        what=f"issued, serial {certificate.serial}",
        detail=f"valid {certificate.not_before:%Y-%m-%d} to {certificate.not_after:%Y-%m-%d}",
    )
    downloads = (
        BundleDownload.objects.filter(bundle__certificate_id=certificate.pk)
        .order_by("at", "pk")
        .values_list("at", "user__username", "address", "via", "with_key", "sha256", "bundle__version")
    )
    via_labels = dict(BundleDownload.Via.choices)
    for at, username, address, via, with_key, sha256, version in downloads:
        event = _take(events, "bundle.downloaded", sha256=sha256)
        what = f"bundle v{version} downloaded via {via_labels.get(via, via)}"
        if with_key:
            what += ", with the private key"
        add(event, at=at, kind="download", actor=username, what=what, detail=f"from {address or 'unknown address'}")
    if certificate.revoked_at is not None:
        event = _take(events, "certificate.revoked")
        reason = certificate.get_revocation_reason_display() or "no reason given"
        add(
            event,
            at=certificate.revoked_at,
            kind="revoked",
            actor=_actor(certificate.revoked_by) or (_actor(event.actor) if event is not None else ""),
            what=f"revoked: {reason}",
            detail=certificate.revocation_comment,
        )
        crl = (
            Crl.objects.filter(ca_id=certificate.ca_id, this_update__gte=certificate.revoked_at)
            .defer("der")
            .order_by("this_update", "number")
            .first()
        )
        timeline.crl = crl
        if crl is not None:
            published = (
                AuditEvent.objects.filter(action="crl.published", data__number=crl.number).order_by("seq").first()
            )
            add(
                published,
                at=crl.this_update,
                kind="crl",
                actor=_actor(published.actor) if published is not None else "signer",
                what=f"first listed on CRL #{crl.number}",
                detail=f"{crl.entries} entries, next update {crl.next_update:%Y-%m-%d %H:%M} UTC",
            )
    for event in events:
        entries.append(
            TimelineEntry(
                at=event.at,
                kind="event",
                actor=_actor(event.actor),
                what=event.action,
                detail=_event_detail(event.data if isinstance(event.data, dict) else {}),
                seq=event.seq,
            )
        )
    order = {"registered": 0, "requested": 1, "approved": 2, "issued": 3, "download": 4, "revoked": 5, "crl": 6}
    entries.sort(key=lambda e: (e.at, order.get(e.kind, 9), e.seq if e.seq is not None else 0))
    return timeline
