"""FQDN allow-list shared by every format we generate (docs/formats.md §8).

One pattern, safe in isakmpd.conf, KeyNote, iked.conf, pf.conf, ipf.rules and swanctl.conf:
LDH labels of 1-63 characters that neither start nor end with a hyphen, dot-separated,
lower case (isakmpd and iked compare IDs byte for byte), no trailing dot, at most 127 bytes
(isakmpd reads the subjectAltName length as a single byte).
"""

from __future__ import annotations

import re

from pki.errors import NameRejected

MAX_FQDN_LENGTH = 127
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def validate_fqdn(value: str) -> str:
    """Return ``value`` unchanged if it is an acceptable FQDN, else raise NameRejected.

    >>> validate_fqdn("client.example.com")
    'client.example.com'
    """
    if not isinstance(value, str) or value == "":
        raise NameRejected("the FQDN is empty")
    if not value.isascii():
        raise NameRejected("the FQDN contains non-ASCII characters; use the punycode (xn--) form")
    bad = sorted({ch for ch in value if not (ch.isalnum() or ch in ".-")})
    if bad:
        shown = ", ".join(repr(ch) for ch in bad)
        raise NameRejected(f"the FQDN contains characters that are not allowed: {shown}")
    if value != value.lower():
        raise NameRejected("the FQDN must be lower case (IPsec peers compare IDs byte for byte)")
    if value.endswith("."):
        raise NameRejected("the FQDN must not end with a dot")
    if len(value) > MAX_FQDN_LENGTH:
        raise NameRejected(f"the FQDN is {len(value)} characters long; the maximum is {MAX_FQDN_LENGTH}")
    labels = value.split(".")
    if len(labels) < 2:
        raise NameRejected("the FQDN needs at least two labels, like host.example.org")
    for label in labels:
        if label == "":
            raise NameRejected("the FQDN contains an empty label (two dots in a row, or a leading dot)")
        if len(label) > 63:
            raise NameRejected(f"the label {label[:20]!r}... is {len(label)} characters long; the maximum is 63")
        if not _LABEL.fullmatch(label):
            raise NameRejected(f"the label {label!r} must not start or end with a hyphen")
    if labels[-1].isdigit():
        raise NameRejected("the last label of an FQDN cannot be all digits (that looks like an IP address)")
    return value
