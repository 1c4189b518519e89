"""The site-profile form: it applies the renderers' own rules (``bundles.renderers.spec``), so a profile it
accepts always renders (security.md T34): it builds the ``Service`` and ``Gateway`` values a render builds
and shows a ``SpecRejected`` as a field error. The service checks again when it saves."""

from __future__ import annotations

from typing import Any

from django import forms

from bundles.renderers.spec import (
    SUITES,
    Gateway,
    Service,
    SpecRejected,
    suite_for,
    validate_admin_hosts,
    validate_ifname,
    validate_services,
)
from enrollment.models import Peer

SERVICES_HELP = (
    "One per line: name address protocol ports — for example <code>proxy 10.1.1.10 tcp 3128</code> or "
    "<code>nameserver 10.1.1.11 tcp-udp 53</code>. Protocol is tcp, udp or tcp-udp; several ports are "
    "separated by commas."
)


def services_to_text(services: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{s['name']} {s['address']} {s['protocol']} {','.join(str(p) for p in s['ports'])}" for s in services
    )


class SiteProfileForm(forms.Form):
    gateway = forms.ModelChoiceField(
        queryset=Peer.objects.filter(kind=Peer.Kind.SERVER).exclude(decision=Peer.Decision.REJECTED),
        required=False,
        empty_label="the only issued gateway peer",
        help_text="The VPN gateway (a server peer). Its FQDN, address and networks go into every bundle.",
    )
    ext_if = forms.CharField(label="Gateway outside interface", max_length=16)
    int_if = forms.CharField(label="Gateway inside interface", max_length=16)
    client_ext_if = forms.CharField(label="Clients' outside interface", max_length=16)
    client_int_if = forms.CharField(label="Client gateways' inside interface", max_length=16)
    suite = forms.ChoiceField(choices=[(s.key, s.label) for s in SUITES.values()])
    legacy_allowed = forms.BooleanField(
        required=False,
        label="Allow the legacy suite",
        help_text="3DES, SHA-1 and MODP 1024 are broken. Only for peers that cannot do better; every page "
        "and every generated file then carries a warning.",
    )
    remote_id_check = forms.BooleanField(
        required=False,
        label="Name every issued peer in the gateway's policy",
        help_text="The case study's extra check: the gateway accepts only FQDNs the portal has issued.",
    )
    services = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), required=False, help_text=SERVICES_HELP)
    admin_hosts = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        help_text="Addresses (one per line) allowed to ssh to the gateway's inside and to client gateways.",
    )

    def clean_services(self) -> list[dict[str, Any]]:
        rows = []
        services = []
        for number, line in enumerate(self.cleaned_data["services"].splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise forms.ValidationError(f"line {number}: expected 4 words: name address protocol ports")
            name, address, protocol, ports = parts
            try:
                port_list = [int(p) for p in ports.split(",") if p]
            except ValueError:
                raise forms.ValidationError(f"line {number}: ports must be numbers, separated by commas") from None
            try:
                service = Service(name=name, address=address, protocol=protocol, ports=tuple(port_list))
            except SpecRejected as exc:
                raise forms.ValidationError(f"line {number}: {exc}") from None
            services.append(service)
            rows.append({"name": name, "address": service.address, "protocol": protocol, "ports": port_list})
        try:
            validate_services(tuple(services))
        except SpecRejected as exc:
            raise forms.ValidationError(str(exc)) from None
        return rows

    def clean_admin_hosts(self) -> list[str]:
        hosts = [h.strip() for h in self.cleaned_data["admin_hosts"].split() if h.strip()]
        try:
            return list(validate_admin_hosts(tuple(hosts)))
        except SpecRejected as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self) -> dict[str, Any]:
        """The rules that join fields: interface pairs, the suite and its switch, the gateway's values."""
        data = super().clean() or {}
        checks = [
            self._interfaces,
            lambda: suite_for(str(data.get("suite", "")), legacy_allowed=bool(data.get("legacy_allowed"))),
            self._gateway,
        ]
        for check in checks:
            try:
                check()
            except SpecRejected as exc:
                field = exc.field if exc.field in self.fields else None
                self.add_error(field, str(exc))
        return data

    def _interfaces(self) -> None:
        data = self.cleaned_data
        for name in ("ext_if", "int_if", "client_ext_if", "client_int_if"):
            if name in data:
                validate_ifname(data[name], field=name)
        if data.get("ext_if") and data.get("ext_if") == data.get("int_if"):
            raise SpecRejected("the gateway's interfaces must differ", field="int_if")
        if data.get("client_ext_if") and data.get("client_ext_if") == data.get("client_int_if"):
            raise SpecRejected("the clients' interfaces must differ", field="client_int_if")

    def _gateway(self) -> None:
        """The chosen gateway peer as every bundle will see it (its FQDN, address and networks)."""
        gateway = self.cleaned_data.get("gateway")
        if gateway is None or "ext_if" in self.errors or "int_if" in self.errors:
            return
        try:
            Gateway(
                fqdn=gateway.fqdn,
                address=str(gateway.address or ""),
                networks=tuple(gateway.networks),
                ext_if=self.cleaned_data.get("ext_if", ""),
                int_if=self.cleaned_data.get("int_if", ""),
            )
        except SpecRejected as exc:
            if exc.field in ("ext_if", "int_if"):
                raise
            raise SpecRejected(f"{gateway.fqdn} cannot be the gateway: {exc}", field="gateway") from None
