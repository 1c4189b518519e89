"""Reads: whether a peer's bundle changed since the last download of the person who takes it.

A selector module beside ``bundles.selectors`` (one concept, so that module stays small). Owners
are told on My peers, on the peer page and on the bundle page, as CA admins are told that the
gateway needs new files: a new CRL, a new suite, a renewed certificate, a changed site profile.

One query for any number of peers: the peers annotated with the markers of their newest version
and of the newest version downloaded by whoever takes the bundle (the owner of a client; any CA
admin for the gateway, a server peer). The markers say why the files changed; a version that
only stopped listing the delivered portal-made key (its README and SHA256SUMS) is no news.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db.models import OuterRef, Q, QuerySet, Subquery

from bundles.models import Bundle, BundleDownload
from core.roles import is_ca_admin
from enrollment.models import Peer

# (marker on Bundle, words for the owner), in the order they are told.
MARKERS = (
    ("certificate_id", "a new certificate"),
    ("suite", "a new suite"),
    ("crl_number", "a new CRL"),
    ("peers_digest", "a new list of issued peers"),
    ("site_generation", "a changed site profile"),
)
FIELDS = ("version", "lists_key", *(marker for marker, _ in MARKERS))


@dataclass(frozen=True)
class BundleNews:
    """A peer's bundle has a version newer than the one its taker downloaded last, and why."""

    peer_id: int
    fqdn: str
    latest: int  # the newest version
    downloaded: int  # the newest version downloaded
    reasons: tuple[str, ...]  # e.g. ("a new CRL",); () when the markers cannot tell

    @property
    def why(self) -> str:
        """The reasons in words: "a new CRL and a new suite", or "new files"."""
        if not self.reasons:
            return "new files"
        if len(self.reasons) == 1:
            return self.reasons[0]
        return ", ".join(self.reasons[:-1]) + " and " + self.reasons[-1]


def _news(row: dict[str, Any]) -> BundleNews | None:
    latest, seen = row["latest_version"], row["seen_version"]
    if latest is None or seen is None or latest <= seen:
        return None  # no bundle, never downloaded (nothing to compare with) or current
    reasons = tuple(words for marker, words in MARKERS if row[f"latest_{marker}"] != row[f"seen_{marker}"])
    if "a new suite" in reasons:  # a new suite is a change of the site profile: say the specific one
        reasons = tuple(r for r in reasons if r != "a changed site profile")
    if not reasons and row["latest_lists_key"] != row["seen_lists_key"]:
        return None  # only the delivered key left the README and SHA256SUMS
    return BundleNews(row["pk"], row["fqdn"], latest, seen, reasons)


def bundle_news(user: User | Any, peers: QuerySet[Peer] | Iterable[Peer]) -> dict[int, BundleNews]:
    """Peer id -> news for those of ``peers`` whose bundle ``user`` takes and whose newest version is
    newer than the newest one taken: one query, whatever the number of peers."""
    if not getattr(user, "is_authenticated", False):
        return {}
    ids: Any = peers.values("pk") if isinstance(peers, QuerySet) else [peer.pk for peer in peers]
    takes = Q(kind=Peer.Kind.CLIENT, owner_id=user.pk)
    if is_ca_admin(user):  # the group is cached on the user: no query
        takes |= Q(kind=Peer.Kind.SERVER)
    latest = Bundle.objects.filter(peer=OuterRef("pk")).order_by("-version")
    # Only those who may take a bundle download it (the owner of a client, CA admins for a server),
    # so the client's newest download is the owner's; the filter says so all the same.
    seen = (
        BundleDownload.objects.filter(bundle__peer=OuterRef("pk"))
        .filter(Q(user=OuterRef("owner_id")) | Q(bundle__peer__kind=Peer.Kind.SERVER))
        .order_by("-bundle__version")
    )
    annotations: dict[str, Any] = {}
    for field in FIELDS:
        annotations[f"latest_{field}"] = Subquery(latest.values(field)[:1])
        annotations[f"seen_{field}"] = Subquery(seen.values(f"bundle__{field}")[:1])
    rows = (
        Peer.objects.filter(pk__in=ids)
        .filter(takes)
        .order_by()
        .annotate(**annotations)
        .values("pk", "fqdn", *annotations)
    )
    return {news.peer_id: news for news in map(_news, rows) if news is not None}
