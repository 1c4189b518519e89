"""``{% load bundle_news %}``: the pages of lower apps (My peers, the peer page) tell owners that their
bundle changed since their last download, without the enrollment app naming the bundles app.

``{% bundle_news peers as news %}`` runs one query (``bundles.changes.bundle_news``) for the signed-in
user and any number of peers (a queryset, a list, or one peer); ``news`` maps peer ids to
``BundleNews``, and ``news|news_for:peer`` picks one peer's.
"""

from __future__ import annotations

from typing import Any

from django import template

from bundles.changes import BundleNews
from bundles.changes import bundle_news as _bundle_news
from enrollment.models import Peer

register = template.Library()


@register.simple_tag(takes_context=True)
def bundle_news(context: template.Context, peers: Any) -> dict[int, BundleNews]:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or peers is None or peers == "":  # "": a name the template does not know
        return {}
    return _bundle_news(user, [peers] if isinstance(peers, Peer) else peers)


@register.filter
def news_for(news: dict[int, BundleNews], peer: Peer) -> BundleNews | None:
    return news.get(peer.pk) if isinstance(news, dict) else None
