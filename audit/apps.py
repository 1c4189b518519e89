from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The auditor's pages: inventory, timeline, exports, charts and the audit log. They read across
    every app below, so this app sits on top of them; it has no models of its own."""

    name = "audit"
    verbose_name = "Audit"
