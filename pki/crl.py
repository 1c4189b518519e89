"""Certificate revocation lists (RFC 5280 §5): a v2 CRL of the CA, its validity window and when to renew it.

The CRL carries the CA's subject as issuer, an authorityKeyIdentifier and a cRLNumber, both
non-critical; each entry has its serial, its revocationDate and, unless the reason is
"unspecified" (§5.3.1: SHOULD be absent then), a non-critical reasonCode. No invalidityDate.

Speed: ``CertificateRevocationListBuilder.add_revoked_certificate`` copies the whole list on each
call, so N entries cost O(N²) (100,000 entries: 15-45 s). Here the entries are validated by this
module, built once each and handed to the builder's constructor in one list: 100,000 entries
take about 1.5 s including the signature and its check (bench/crl.py measures it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pki.errors import IssuanceRefused
from pki.keys import PrivateKey, signature_hash
from pki.profiles import SERIAL_BITS

MAX_CRL_DAYS = 365
# RFC 5280 §5.2.3: a cRLNumber is at most 20 octets, so a non-negative one stays below 2**159.
CRL_NUMBER_LIMIT = 2**159
# X.509 times start in 1950 (UTCTime); from 2050 on they are GeneralizedTime (RFC 5280 §5.1.2.4).
_EARLIEST = datetime(1950, 1, 1, tzinfo=UTC)

# The reasons a CA of this kind gives (RFC 5280 §5.3.1). Left out on purpose: certificateHold and
# removeFromCRL (revocation here is final), cACompromise and aACompromise (no sub-CAs, no ACs).
REASONS: dict[str, x509.ReasonFlags | None] = {
    "unspecified": None,  # no reasonCode extension at all
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
}

# One immutable extension list per reason, shared by every entry that gives it.
_ENTRY_EXTENSIONS: dict[str, list[x509.Extension[x509.ExtensionType]]] = {
    name: [] if flag is None else [x509.Extension(x509.CRLReason.oid, False, x509.CRLReason(flag))]
    for name, flag in REASONS.items()
}


@dataclass(frozen=True)
class RevokedEntry:
    """One line of the CRL: ``reason`` is an RFC 5280 name such as "keyCompromise" (see REASONS)."""

    serial: int
    revoked_at: datetime
    reason: str


def crl_validity(now: datetime, days: int, ca_not_after: datetime) -> tuple[datetime, datetime]:
    """(thisUpdate, nextUpdate): ``now`` to the second, ``days`` later, never past the CA's notAfter."""
    this_update = _utc(now, "now").replace(microsecond=0)
    ca_end = _utc(ca_not_after, "the CA's notAfter")
    if not 1 <= days <= MAX_CRL_DAYS:
        raise IssuanceRefused(f"the CRL validity must be between 1 and {MAX_CRL_DAYS} days, not {days}")
    if ca_end <= this_update:
        raise IssuanceRefused(
            f"the CA certificate expired on {ca_end:%Y-%m-%d %H:%M} UTC; it can no longer publish a CRL"
        )
    return this_update, min(this_update + timedelta(days=days), ca_end)


def renewal_due(this_update: datetime, next_update: datetime, now: datetime, *, every: timedelta | None = None) -> bool:
    """True at or after the CRL's half-life, so a fresh CRL is out long before the old one expires;
    with ``every``, also once the CRL is that old (a long-lived CRL renewed often: peers that fetch
    it keep a CRL with most of its life left, so they survive a long outage of the portal)."""
    if every is not None and now >= this_update + every:
        return True
    return now >= this_update + (next_update - this_update) / 2


def build_crl(
    *,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    number: int,
    this_update: datetime,
    next_update: datetime,
    entries: Iterable[RevokedEntry],
) -> x509.CertificateRevocationList:
    """The signed v2 CRL, entries in serial order; its signature is checked under ``ca_cert`` before it
    is returned (a faulty RSA-CRT signature would leak the key; a wrong key must not publish)."""
    if not 0 <= number < CRL_NUMBER_LIMIT:
        raise IssuanceRefused("the CRL number must be at least 0 and below 2**159 (20 octets)")
    this_utc = _utc(this_update, "thisUpdate").replace(microsecond=0)
    next_utc = _utc(next_update, "nextUpdate").replace(microsecond=0)
    if this_utc < _EARLIEST:
        raise IssuanceRefused("thisUpdate must be in 1950 or later")
    if next_utc <= this_utc:
        raise IssuanceRefused(
            f"nextUpdate ({next_utc:%Y-%m-%d %H:%M:%S}) must be after thisUpdate ({this_utc:%Y-%m-%d %H:%M:%S})"
        )
    ca_public = ca_cert.public_key()
    if not isinstance(ca_public, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise IssuanceRefused(f"the CA certificate has a {type(ca_public).__name__}; only RSA and ECDSA CAs sign CRLs")
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public)

    builder = (
        # The constructor takes the whole list at once: add_revoked_certificate is quadratic.
        x509.CertificateRevocationListBuilder(revoked_certificates=_revoked_certificates(entries))
        .issuer_name(ca_cert.subject)
        .last_update(this_utc)
        .next_update(next_utc)
        .add_extension(aki, critical=False)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    crl = builder.sign(ca_key, signature_hash(ca_key))
    try:
        valid = crl.is_signature_valid(ca_public)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        valid = False
    if not valid:
        raise IssuanceRefused("internal error: the new CRL's signature does not verify under the CA certificate")
    return crl


def _revoked_certificates(entries: Iterable[RevokedEntry]) -> list[x509.RevokedCertificate]:
    """Validated entries, sorted by serial so the same revocations always give the same CRL body."""
    checked: dict[int, tuple[datetime, list[x509.Extension[x509.ExtensionType]]]] = {}
    for entry in entries:
        serial = entry.serial
        if not 0 < serial < 2**SERIAL_BITS:
            raise IssuanceRefused(f"serial {serial:#x} is outside 1 to 2**{SERIAL_BITS} - 1 and cannot be listed")
        if serial in checked:
            raise IssuanceRefused(f"serial {serial:#x} is listed twice")
        extensions = _ENTRY_EXTENSIONS.get(entry.reason)
        if extensions is None:
            raise IssuanceRefused(
                f"unknown revocation reason {entry.reason[:40]!r} for serial {serial:#x}; "
                f"use one of: {', '.join(REASONS)}"
            )
        revoked_at = entry.revoked_at
        if revoked_at.tzinfo is not UTC:  # inline fast path: this loop runs once per revoked certificate
            revoked_at = _utc(revoked_at, f"the revocation date of serial {serial:#x}")
        if revoked_at < _EARLIEST:
            raise IssuanceRefused(f"the revocation date of serial {serial:#x} is before 1950")
        # cryptography's builders keep naive UTC; the builder methods would convert the same way.
        checked[serial] = (revoked_at.replace(tzinfo=None, microsecond=0), extensions)
    builder = x509.RevokedCertificateBuilder
    return [builder(serial, *checked[serial]).build() for serial in sorted(checked)]


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is UTC:  # the usual case (Django's timezone.now() too), and the fast one
        return moment
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise IssuanceRefused(f"{what} has no time zone; pass an aware datetime (UTC)")
    return moment.astimezone(UTC)
