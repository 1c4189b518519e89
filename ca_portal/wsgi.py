"""WSGI entry point for gunicorn: ``gunicorn ca_portal.wsgi``. This process never signs."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ca_portal.settings")
application = get_wsgi_application()
