"""Errors raised by the pure PKI core. Every message is safe to show to the person who sent the input."""

from __future__ import annotations


class PkiError(ValueError):
    """Base class: the input is refused; ``str(exc)`` says why in words a person understands."""


class NameRejected(PkiError):
    """An FQDN or another name does not pass the allow-list."""


class CsrRejected(PkiError):
    """The CSR is unreadable or violates the issuance policy."""


class KeyRejected(PkiError):
    """A key is of a type or size the policy refuses, or does not decrypt."""


class CaRejected(PkiError):
    """A CA certificate/key pair is unusable or below the minimum strength."""


class IssuanceRefused(PkiError):
    """The certificate cannot be issued (for example: the CA has expired)."""
