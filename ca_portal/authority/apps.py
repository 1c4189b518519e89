from django.apps import AppConfig


class AuthorityConfig(AppConfig):
    name = "ca_portal.authority"
    label = "authority"
    verbose_name = "Certificate authority"

    def ready(self) -> None:
        import ca_portal.celery  # noqa: F401  (registers the Celery app and its tasks)
        from ca_portal.authority import audit_watch, auth_events

        auth_events.connect()
        audit_watch.connect()
