from django.apps import AppConfig


class AuthorityConfig(AppConfig):
    name = "authority"
    label = "authority"
    verbose_name = "Certificate authority"

    def ready(self) -> None:
        from axes.signals import user_locked_out
        from django.core import checks

        from authority import audit_watch, auth_events, crl_policy
        from core.metrics import count_lockout

        auth_events.connect()
        audit_watch.connect()
        user_locked_out.connect(count_lockout, dispatch_uid="ca_portal_count_lockouts")
        checks.register(crl_policy.check_crl_policy, checks.Tags.security)
