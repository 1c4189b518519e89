"""The site profile: the site-wide inputs of every bundle, changed by CA admins (read it with
``bundles.selectors.profile_get``)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F

from authority.audit import audit_record
from bundles.errors import BundleError
from bundles.models import SiteProfile
from bundles.renderers.spec import Service, SpecRejected, suite_for, validate_ifname, validate_ipv4
from bundles.services.sweeper import bundles_sweep_soon
from enrollment.models import Peer


def _clean_services(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cleaned = []
    for item in raw:
        try:
            ports = tuple(int(p) for p in item.get("ports", ()))
            service = Service(
                name=str(item.get("name", "")),
                address=str(item.get("address", "")),
                protocol=str(item.get("protocol", "")),
                ports=ports,
            )
        except (TypeError, ValueError) as exc:
            field = exc.field if isinstance(exc, SpecRejected) else "services"
            raise BundleError(f"service {str(item.get('name', ''))[:30]!r}: {exc}", field=field) from None
        cleaned.append(
            {"name": service.name, "address": service.address, "protocol": service.protocol, "ports": list(ports)}
        )
    return cleaned


def profile_update(*, actor: User, **changes: Any) -> SiteProfile:
    """Change site-wide bundle inputs; every bundle becomes stale and is rendered again by the sweeper."""
    allowed = {
        "gateway_id", "ext_if", "int_if", "client_ext_if", "client_int_if", "suite", "legacy_allowed",
        "remote_id_check", "services", "admin_hosts",
    }  # fmt: skip
    unknown = set(changes) - allowed
    if unknown:
        raise BundleError(f"unknown settings: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        profile = SiteProfile.objects.select_for_update().get_or_create(pk=1)[0]
        before = _profile_facts(profile)
        for name, value in changes.items():
            setattr(profile, name, value)
        try:
            for name in ("ext_if", "int_if", "client_ext_if", "client_int_if"):
                validate_ifname(getattr(profile, name), field=name)
            if profile.ext_if == profile.int_if:
                raise SpecRejected("the gateway's interfaces must differ", field="int_if")
            if profile.client_ext_if == profile.client_int_if:
                raise SpecRejected("the clients' interfaces must differ", field="client_int_if")
            suite_for(profile.suite, legacy_allowed=profile.legacy_allowed)
            profile.admin_hosts = sorted(
                {validate_ipv4(str(h), field="admin_hosts") for h in profile.admin_hosts},
                key=lambda a: tuple(int(p) for p in a.split(".")),
            )
        except SpecRejected as exc:
            raise BundleError(str(exc), field=exc.field) from None
        profile.services = _clean_services(list(profile.services))
        if profile.gateway_id is not None:
            gateway = Peer.objects.filter(pk=profile.gateway_id, kind=Peer.Kind.SERVER).first()
            if gateway is None:
                raise BundleError("the gateway must be a peer of kind server", field="gateway")
        after = _profile_facts(profile)
        if after == before:
            return profile
        profile.generation = F("generation") + 1
        profile.updated_by = actor
        profile.save()
        profile.refresh_from_db()
        changed = {k: after[k] for k in after if after[k] != before[k]}
        audit_record("site_profile.updated", actor=actor.get_username(), target="site_profile", changed=changed)
        transaction.on_commit(bundles_sweep_soon)
    return profile


def _profile_facts(profile: SiteProfile) -> dict[str, Any]:
    return {
        "gateway": profile.gateway_id,
        "ext_if": profile.ext_if,
        "int_if": profile.int_if,
        "client_ext_if": profile.client_ext_if,
        "client_int_if": profile.client_int_if,
        "suite": profile.suite,
        "legacy_allowed": profile.legacy_allowed,
        "remote_id_check": profile.remote_id_check,
        "services": list(profile.services),
        "admin_hosts": list(profile.admin_hosts),
    }
