from django.apps import AppConfig


class AuthorityConfig(AppConfig):
    name = "authority"
    label = "authority"
    verbose_name = "Certificate authority"

    def ready(self) -> None:
        from authority import audit_watch, auth_events

        auth_events.connect()
        audit_watch.connect()
