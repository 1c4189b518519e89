"""Signed audit checkpoints: one line of text that pins the audit chain's head at a sequence number.

``ca_portal-audit-checkpoint v1 seq=<n> head=<hex> at=<YYYY-MM-DDTHH:MM:SSZ> ca=<sha256> sig=<base64>``

The signature covers everything before `` sig=``, and is made with the CA key (PKCS#1 v1.5 for
RSA, ECDSA for EC, with the hash ``signature_hash`` picks). ``ca`` is the SHA-256 fingerprint of the
DER CA certificate that verifies it, so a verifier who pinned the CA certificate (/ca.pem) notices a
substituted one (docs/security.md T37). Pure: no Django, no clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from pki.keys import PrivateKey, signature_hash

PREFIX = "ca_portal-audit-checkpoint v1"
_AT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_LINE = re.compile(
    r"ca_portal-audit-checkpoint v1 seq=(?P<seq>[1-9][0-9]{0,18}) head=(?P<head>[0-9a-f]{64})"
    r" at=(?P<at>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z) ca=(?P<ca>[0-9a-f]{64})"
    r" sig=(?P<sig>[A-Za-z0-9+/]{1,1400}={0,2})"
)


class CheckpointError(ValueError):
    """A checkpoint line that cannot be read, or whose signature does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    head: str
    at: datetime
    ca_fingerprint: str
    signature: bytes

    @property
    def signed_text(self) -> str:
        return f"{PREFIX} seq={self.seq} head={self.head} at={self.at:{_AT_FORMAT}} ca={self.ca_fingerprint}"

    @property
    def line(self) -> str:
        return f"{self.signed_text} sig={base64.b64encode(self.signature).decode('ascii')}"


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lower-case hex: computed, never read from a stored column."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def checkpoint_sign(*, seq: int, head: str, at: datetime, ca_key: PrivateKey, ca_cert: x509.Certificate) -> Checkpoint:
    """Sign the head ``head`` of event ``seq`` at ``at`` (kept to whole seconds, UTC)."""
    if seq < 1 or not re.fullmatch(r"[0-9a-f]{64}", head):
        raise CheckpointError("a checkpoint needs a sequence number of at least 1 and a SHA-256 head")
    unsigned = Checkpoint(seq, head, at.astimezone(UTC).replace(microsecond=0), certificate_fingerprint(ca_cert), b"")
    data = unsigned.signed_text.encode("ascii")
    if isinstance(ca_key, rsa.RSAPrivateKey):
        signature = ca_key.sign(data, padding.PKCS1v15(), signature_hash(ca_key))
    else:
        signature = ca_key.sign(data, ec.ECDSA(signature_hash(ca_key)))
    checkpoint = Checkpoint(unsigned.seq, unsigned.head, unsigned.at, unsigned.ca_fingerprint, signature)
    checkpoint_verify(checkpoint, ca_cert)  # a faulty signature never leaves the process
    return checkpoint


def checkpoint_parse(line: str) -> Checkpoint:
    match = _LINE.fullmatch(line.strip())
    if match is None:
        raise CheckpointError("not a ca_portal audit checkpoint line")
    try:
        signature = base64.b64decode(match["sig"], validate=True)
        at = datetime.strptime(match["at"], _AT_FORMAT).replace(tzinfo=UTC)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError(f"unreadable checkpoint: {exc}") from None
    return Checkpoint(int(match["seq"]), match["head"], at, match["ca"], signature)


def checkpoint_verify(checkpoint: Checkpoint, ca_cert: x509.Certificate) -> None:
    """Raise CheckpointError unless ``ca_cert`` is the certificate named and its key made the signature."""
    if certificate_fingerprint(ca_cert) != checkpoint.ca_fingerprint:
        raise CheckpointError("the checkpoint names another CA certificate")
    public_key = ca_cert.public_key()
    data = checkpoint.signed_text.encode("ascii")
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(checkpoint.signature, data, padding.PKCS1v15(), signature_hash(public_key))
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(checkpoint.signature, data, ec.ECDSA(signature_hash(public_key)))
        else:
            raise CheckpointError("the CA certificate's key type cannot sign checkpoints")
    except InvalidSignature:
        raise CheckpointError("the checkpoint's signature does not verify under the CA certificate") from None
