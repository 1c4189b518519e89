"""Forms translate input into service arguments and service errors into field errors; no logic here."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from enrollment.models import Peer
from pki.csr import MAX_CSR_BYTES

_PLAIN_WORD = re.compile(r"[a-z]+[,;:]?")


def sentence(message: str) -> str:
    """``message`` as a sentence: a capital first letter and a full stop, like Django's own messages.

    The services and the crypto checks speak in lower case ("the RSA key has 1024 bits; ..."), which
    reads well after a colon and in the API; a form shows it on its own. A first word that is not a
    plain lower-case word (an FQDN, a quoted value, a name) is left as it is.
    """
    text = message.strip()
    if not text:
        return text
    first = text.split(None, 1)[0]
    if _PLAIN_WORD.fullmatch(first):
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _as_sentences(error: ValidationError) -> ValidationError:
    if hasattr(error, "error_dict"):
        return ValidationError(
            {name: _as_sentences(ValidationError(items)).error_list for name, items in error.error_dict.items()}
        )
    # Without an error_dict, iterating a ValidationError gives each message formatted with its params.
    return ValidationError(
        [
            ValidationError(sentence(str(text)), code=item.code)
            for item, text in zip(error.error_list, error, strict=True)
        ]
    )


class SentenceErrors(forms.Form):
    """Every error these forms show is a sentence: theirs, Django's and the services' alike."""

    def add_error(self, field: str | None, error: ValidationError | str | Any) -> None:
        if isinstance(error, str):
            error = sentence(error)
        elif isinstance(error, ValidationError):
            error = _as_sentences(error)
        super().add_error(field, error)


class _KeyChoiceForm(SentenceErrors):
    """The key part of registration and renewal: the owner's CSR (pasted or uploaded) or a portal-made key."""

    KEY_CHOICES = [("csr", "I bring my own certificate request (recommended)"), ("portal", "Make the key for me")]

    key_source = forms.ChoiceField(choices=KEY_CHOICES, initial="csr", widget=forms.RadioSelect, label="Private key")
    csr = forms.CharField(
        required=False,
        label="Certificate request (PEM)",
        help_text="Paste the output of: openssl req -new -newkey rsa:3072 -nodes -keyout local.key -subj /CN=<fqdn>",
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "class": "mono"}),
    )
    csr_file = forms.FileField(required=False, label="…or upload the .csr file")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        upload = data.get("csr_file")
        if upload is not None:
            if upload.size > MAX_CSR_BYTES:
                self.add_error("csr_file", f"The file is {upload.size} bytes; a CSR is at most {MAX_CSR_BYTES} bytes.")
            else:
                data["csr"] = upload.read().decode("utf-8", "replace")
        if "PRIVATE KEY" in (data.get("csr") or ""):
            # Never send a private key back to the browser: blank the box before re-rendering.
            blanked = dict(self.data.items())
            blanked["csr"] = ""
            self.data = blanked
            self.add_error("csr", "This is a private key, not a certificate request. Never paste a private key here.")
            data["csr"] = ""
            return data
        if data.get("key_source") == "csr" and not (data.get("csr") or "").strip():
            self.add_error("csr", "Paste or upload your certificate request, or choose 'Make the key for me'.")
        if data.get("key_source") == "portal":
            data["csr"] = ""
        return data


class PeerRegisterForm(_KeyChoiceForm):
    field_order = ["fqdn", "kind", "networks", "address", "key_source", "csr", "csr_file"]

    fqdn = forms.CharField(
        label="FQDN of the peer",
        max_length=127,
        help_text="The host's fully qualified name, lower case, e.g. laptop1.example.org. "
        "It becomes the certificate's ID.",
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "spellcheck": "false", "placeholder": "laptop1.example.org"}
        ),
    )
    kind = forms.ChoiceField(choices=Peer.Kind.choices, initial=Peer.Kind.CLIENT)
    networks = forms.CharField(
        required=False,
        label="Networks behind the peer",
        help_text="For a client gateway or the VPN gateway: one IPv4 network per line, e.g. 10.10.10.0/24. "
        "Not one another peer or the gateway already uses. Leave empty for a roaming laptop.",
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
    )
    address = forms.CharField(
        required=False,
        label="Public address",
        help_text="Required for the VPN gateway (kind server): the IPv4 address clients connect to.",
    )

    def __init__(self, *args: Any, allow_server: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allow_server = allow_server
        if not allow_server:
            # Only CA admins register the VPN gateway: for everyone else the kind is always client, so
            # there is nothing to choose (a forged "server" is still refused as an invalid choice).
            kind = self.fields["kind"]
            assert isinstance(kind, forms.ChoiceField)
            kind.choices = [(Peer.Kind.CLIENT, Peer.Kind.CLIENT.label)]
            kind.widget = forms.HiddenInput()
            kind.initial = Peer.Kind.CLIENT
            # A client uses both: the networks behind a client gateway, and a fixed public address
            # (without one, install.sh fills in the address the host has). Say so for a client.
            self.fields["networks"].help_text = (
                "Only for a client gateway: the networks behind it, one CIDR per line, e.g. 10.10.10.0/24. "
                "Leave empty for a laptop or any single host."
            )
            self.fields["address"].help_text = (
                "Only for a host with a fixed public IP address. Leave empty if it changes (a laptop): "
                "install.sh then fills in the address the host has."
            )
        else:
            self.fields["address"].help_text = (
                "Required for the VPN gateway (kind server): the address clients connect to. For a client, "
                "optional: its fixed public IP address."
            )

    @property
    def client_details_open(self) -> bool:
        """Whether the page shows a client's networks and address unfolded: they were filled in, or are wrong."""
        return any(self[name].value() or self[name].errors for name in ("networks", "address"))

    def clean_fqdn(self) -> str:
        return str(self.cleaned_data["fqdn"]).strip()

    def clean_networks(self) -> list[str]:
        return [line.strip() for line in str(self.cleaned_data["networks"]).splitlines() if line.strip()]


class RenewForm(_KeyChoiceForm):
    """Renewal: the FQDN, kind, networks and address are the peer's; only the key is new."""


class ApproveForm(SentenceErrors):
    """The approval button, and the acknowledgement of the overlaps the page showed (if any)."""

    accept_overlap = forms.BooleanField(required=False, label="I accept the overlap")
    overlap_with = forms.CharField(required=False, widget=forms.HiddenInput, max_length=2000)

    def clean(self) -> dict[str, Any]:
        """``accepted``: the ids of the peers whose overlap the admin saw and accepted (none unless ticked)."""
        data = super().clean() or {}
        ids = [int(v) for v in str(data.get("overlap_with") or "").split(",") if v.strip().isdigit()][:100]
        data["accepted"] = ids if data.get("accept_overlap") else []
        return data


class RejectForm(SentenceErrors):
    reason = forms.CharField(
        max_length=500, widget=forms.Textarea(attrs={"rows": 3}), label="Reason (the owner sees it)"
    )


class PolicyForm(SentenceErrors):
    allowed_domains = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="One domain suffix per line (example.com allows laptop1.example.com). Empty: any domain.",
    )
    default_validity_days = forms.IntegerField(min_value=1, max_value=825)
    allow_self_approval = forms.BooleanField(
        required=False, help_text="Only takes effect while the site has exactly one CA admin."
    )
    auto_approve_renewals = forms.BooleanField(
        required=False,
        label="Approve renewals automatically",
        help_text="A renewal keeps the FQDN, kind, networks and owner of the certificate it replaces; with this "
        "on it is signed without waiting for a CA admin. Every automatic approval is in the audit log.",
    )

    def clean_allowed_domains(self) -> list[str]:
        return [line.strip() for line in str(self.cleaned_data["allowed_domains"]).splitlines() if line.strip()]


class RevokeForm(SentenceErrors):
    """The confirmation step of a revocation: a reason, an optional note, and an explicit tick."""

    reason = forms.ChoiceField(widget=forms.RadioSelect)
    comment = forms.CharField(
        max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Note for the audit log"
    )
    confirm = forms.BooleanField(
        label="I understand: the certificate stops working once peers have the new CRL, and this cannot be undone."
    )

    def __init__(self, *args: Any, reasons: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["reason"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = reasons
