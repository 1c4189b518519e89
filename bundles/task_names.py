"""The names of the bundles app's Celery tasks: what ``core.tasks.send_by_name`` and beat send."""

BUNDLE_RENDER = "bundles.bundle_render"
BUNDLES_RENDER_STALE = "bundles.bundles_render_stale"
BUNDLES_RENDER_BATCH = "bundles.bundles_render_batch"
