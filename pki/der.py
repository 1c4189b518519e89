"""The few DER encodings needed to write a PKCS#8 EncryptedPrivateKeyInfo with PBES2 + scrypt.

``cryptography`` can *read* scrypt-protected PKCS#8 but only *writes* PBKDF2 with 2,048
iterations (BestAvailableEncryption). We want a memory-hard KDF for the CA key at rest, so we
encode the small, fixed structure of RFC 8018 §A.4 and RFC 7914 §7 ourselves.
"""

from __future__ import annotations


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _length(len(value)) + value


def sequence(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def octet_string(value: bytes) -> bytes:
    return tlv(0x04, value)


def integer(value: int) -> bytes:
    if value < 0:
        raise ValueError("only non-negative integers are needed here")
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")  # leading 0x00 keeps it positive
    return tlv(0x02, body)


def oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray()
    # The first two arcs share one subidentifier, base-128 like the rest (2.999 needs two octets).
    for part in [40 * parts[0] + parts[1], *parts[2:]]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        body.extend(reversed(chunk))
    return tlv(0x06, bytes(body))
