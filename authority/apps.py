from django.apps import AppConfig


class AuthorityConfig(AppConfig):
    name = "authority"
    label = "authority"
    verbose_name = "Certificate authority"

    def ready(self) -> None:
        from axes.signals import user_locked_out
        from django.core import checks
        from django.db.models.signals import post_migrate

        from authority import audit_watch, auth_events, checkpoints, crl_policy, db_roles
        from core.metrics import count_lockout

        auth_events.connect()
        audit_watch.connect()
        checkpoints.connect()  # wakes the signer's checkpoint task every 100 events
        user_locked_out.connect(count_lockout, dispatch_uid="ca_portal_count_lockouts")
        checks.register(crl_policy.check_crl_policy, checks.Tags.security)
        # With the two-role set-up (docs/backup.md), a new table's runtime privileges follow the audit rules.
        post_migrate.connect(db_roles.restrict_after_migrate, sender=self, dispatch_uid="authority-db-roles")
