"""The write path of the bundles app, one module per concept; reads are in ``bundles.selectors``.

- ``profile``: the site profile that every bundle is rendered from;
- ``inputs``: the database rows turned into the pure renderers' specs;
- ``render``: rendering and pruning the stored versions;
- ``sweeper``: finding and queueing the stale peers;
- ``downloads``: downloads, the portal-made key's single delivery and one-time links.

``from bundles import services`` then ``services.<name>`` reaches every public name below.
"""

from bundles.errors import BundleError
from bundles.services.downloads import LINK_TTL, Download, Refusal, bundle_download, link_create, link_redeem
from bundles.services.inputs import peer_spec, site_spec, template_environment
from bundles.services.profile import profile_update
from bundles.services.render import KEEP_VERSIONS, RenderOutcome, bundle_render, bundles_render_batch
from bundles.services.sweeper import RENDER_BATCH, REQUEUE_AFTER, bundles_render_stale, bundles_sweep_soon

__all__ = [
    "KEEP_VERSIONS",
    "LINK_TTL",
    "RENDER_BATCH",
    "REQUEUE_AFTER",
    "BundleError",
    "Download",
    "Refusal",
    "RenderOutcome",
    "bundle_download",
    "bundle_render",
    "bundles_render_batch",
    "bundles_render_stale",
    "bundles_sweep_soon",
    "link_create",
    "link_redeem",
    "peer_spec",
    "profile_update",
    "site_spec",
    "template_environment",
]
