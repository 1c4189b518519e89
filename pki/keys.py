"""Key generation, strength policy and encryption at rest.

Key types are named as on the command line: rsa-2048, rsa-3072, rsa-4096, ecdsa-p256, ecdsa-p384.
Private keys at rest are PKCS#8 ``ENCRYPTED PRIVATE KEY`` with PBES2, scrypt and AES-256-CBC;
OpenSSL reads them (``openssl pkey -in ca.key``) and so does ``cryptography``.
"""

from __future__ import annotations

import base64
import os
import textwrap
from typing import Literal, get_args

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from pki import der
from pki.errors import KeyRejected

KeyType = Literal["rsa-2048", "rsa-3072", "rsa-4096", "ecdsa-p256", "ecdsa-p384"]
KEY_TYPES: tuple[KeyType, ...] = get_args(KeyType)
DEFAULT_KEY_TYPE: KeyType = "rsa-3072"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
SignatureHash = hashes.SHA256 | hashes.SHA384

# scrypt cost: N=2**14, r=8 (16 MiB, OpenSSL's own default for `pkcs8 -scrypt`). OpenSSL caps PBE
# scrypt memory at 32 MiB, and N=2**15 already exceeds it: admins must be able to open their own key.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1

_OID_PBES2 = "1.2.840.113549.1.5.13"
_OID_SCRYPT = "1.3.6.1.4.1.11591.4.11"
_OID_AES256_CBC = "2.16.840.1.101.3.4.1.42"

_CURVES: dict[str, type[ec.EllipticCurve]] = {"ecdsa-p256": ec.SECP256R1, "ecdsa-p384": ec.SECP384R1}


def generate_private_key(key_type: KeyType) -> PrivateKey:
    if key_type.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type]())
    raise KeyRejected(f"unknown key type {key_type!r}; choose one of {', '.join(KEY_TYPES)}")


def describe_key(key: PublicKey | PrivateKey) -> str:
    """A short human name for the key: ``rsa-3072``, ``ecdsa-p256``; other keys get their class name."""
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        return f"rsa-{key.key_size}"
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        return {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384"}.get(key.curve.name, f"ecdsa-{key.curve.name}")
    return type(key).__name__


def signature_hash(key: PrivateKey | PublicKey) -> SignatureHash:
    """SHA-384 goes with P-384 (RFC 5480 §4); everything else signs with SHA-256."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def encrypt_private_key(
    key: PrivateKey,
    passphrase: bytes,
    *,
    salt: bytes | None = None,
    iv: bytes | None = None,
    scrypt_n: int = SCRYPT_N,
) -> bytes:
    """PEM ``ENCRYPTED PRIVATE KEY``: PKCS#8 under PBES2 with scrypt and AES-256-CBC (RFC 8018, RFC 7914).

    ``scrypt_n`` is the work factor written into the file (a power of two); only the test settings
    lower it, to keep a suite that stores hundreds of keys fast."""
    if not passphrase:
        raise KeyRejected("refusing to encrypt a key with an empty passphrase")
    salt = salt if salt is not None else os.urandom(16)
    iv = iv if iv is not None else os.urandom(16)
    plain = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    aes_key = Scrypt(salt=salt, length=32, n=scrypt_n, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padded) + encryptor.finalize()
    scrypt_params = der.sequence(
        der.octet_string(salt), der.integer(scrypt_n), der.integer(SCRYPT_R), der.integer(SCRYPT_P), der.integer(32)
    )
    algorithm = der.sequence(
        der.oid(_OID_PBES2),
        der.sequence(
            der.sequence(der.oid(_OID_SCRYPT), scrypt_params),
            der.sequence(der.oid(_OID_AES256_CBC), der.octet_string(iv)),
        ),
    )
    body = base64.b64encode(der.sequence(algorithm, der.octet_string(encrypted))).decode("ascii")
    lines = "\n".join(textwrap.wrap(body, 64))
    return f"-----BEGIN ENCRYPTED PRIVATE KEY-----\n{lines}\n-----END ENCRYPTED PRIVATE KEY-----\n".encode("ascii")


def load_private_key(pem: bytes, passphrase: bytes | None) -> PrivateKey:
    """Load a PEM private key (encrypted or not). Raises KeyRejected with a readable reason."""
    try:
        key = serialization.load_pem_private_key(pem, passphrase)
    except TypeError as exc:  # encrypted key without passphrase, or the reverse
        raise KeyRejected(f"the key file and the passphrase do not go together: {exc}") from exc
    except ValueError as exc:
        raise KeyRejected("the key could not be read: wrong passphrase, or not a PEM private key") from exc
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise KeyRejected(f"{type(key).__name__} keys are not supported; use RSA or ECDSA")
    return key


def public_key_der(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key_der(data: bytes) -> PublicKey:
    key = serialization.load_der_public_key(data)
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise KeyRejected(f"{type(key).__name__} keys are not supported; use RSA or ECDSA")
    return key
