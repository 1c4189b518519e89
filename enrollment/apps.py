from django.apps import AppConfig


class EnrollmentConfig(AppConfig):
    name = "enrollment"
    verbose_name = "Enrollment"

    def ready(self) -> None:
        from authority import signals
        from enrollment.services import peers_issued_announce

        signals.certificates_issued.connect(peers_issued_announce, dispatch_uid="enrollment-peers-issued")
