from django.apps import AppConfig


class BundlesConfig(AppConfig):
    name = "bundles"
    verbose_name = "Bundles"

    def ready(self) -> None:
        from authority import signals
        from bundles.services import bundles_sweep_soon

        # Every bundle lists the issued clients (the gateway's) and ships the CRL: any of these
        # makes some bundle stale, and the debounced sweeper finds which.
        for signal in (signals.certificates_issued, signals.certificates_revoked, signals.crl_published):
            signal.connect(bundles_sweep_soon, dispatch_uid=f"bundles-sweep-{id(signal)}")
