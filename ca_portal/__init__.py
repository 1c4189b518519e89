"""The site: settings, URLs, the Celery app, wsgi, the home page. It only wires; no app imports it."""

from ca_portal.celery import app as celery_app

__all__ = ["celery_app"]
