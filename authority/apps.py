from django.apps import AppConfig


class AuthorityConfig(AppConfig):
    name = "authority"
    label = "authority"
    verbose_name = "Certificate authority"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from authority import audit_watch, auth_events, db_roles

        auth_events.connect()
        audit_watch.connect()
        # With the two-role set-up (docs/backup.md), a new table's runtime privileges follow the audit rules.
        post_migrate.connect(db_roles.restrict_after_migrate, sender=self, dispatch_uid="authority-db-roles")
