"""Celery adapters for the render queue: ids in, one service call, the retry policy."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from bundles import task_names


@shared_task(
    name=task_names.BUNDLE_RENDER, acks_late=True, autoretry_for=(DatabaseError,), retry_backoff=True, max_retries=5
)
def bundle_render_task(peer_id: int) -> None:
    from bundles import services

    services.bundle_render(peer_id=peer_id)


@shared_task(name=task_names.BUNDLES_RENDER_STALE)
def bundles_render_stale_task() -> int:
    from bundles import services

    return services.bundles_render_stale()


@shared_task(
    name=task_names.BUNDLES_RENDER_BATCH,
    acks_late=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    max_retries=5,
)
def bundles_render_batch_task(peer_ids: list[int]) -> int:
    from bundles import services

    return services.bundles_render_batch(peer_ids=[int(i) for i in peer_ids])
