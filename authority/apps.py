from django.apps import AppConfig


class AuthorityConfig(AppConfig):
    name = "authority"
    label = "authority"
    verbose_name = "Certificate authority"

    def ready(self) -> None:
        from django.core import checks

        from authority import audit_watch, auth_events, crl_policy

        auth_events.connect()
        audit_watch.connect()
        checks.register(crl_policy.check_crl_policy, checks.Tags.security)
