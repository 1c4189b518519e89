"""keys: encryption at rest (PBES2 + scrypt + AES-256-CBC), loading, key names; der: the encoder under it."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.der import encoder as pyasn1_der
from pyasn1.type import univ

from pki import der
from pki.errors import KeyRejected
from pki.keys import (
    describe_key,
    encrypt_private_key,
    generate_private_key,
    load_private_key,
    load_public_key_der,
    public_key_der,
    signature_hash,
)
from tests.conftest import fixture_bytes
from tests.pkitools import openssl_asn1parse

PASSPHRASE = b"correct horse battery staple"


def _pem_body(pem: bytes) -> bytes:
    lines = pem.strip().splitlines()
    return base64.b64decode(b"".join(lines[1:-1]))


def _rsa_fixture() -> rsa.RSAPrivateKey:
    key = load_private_key(fixture_bytes("client-rsa2048.key"), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


# --- encryption at rest (docs/security.md T20) ---------------------------------------------------------


def test_it_writes_an_encrypted_pkcs8_pem() -> None:
    pem = encrypt_private_key(ec.generate_private_key(ec.SECP256R1()), PASSPHRASE)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert pem.endswith(b"-----END ENCRYPTED PRIVATE KEY-----\n")
    assert all(len(line) <= 64 for line in pem.splitlines())
    assert b"BEGIN PRIVATE KEY" not in pem


def test_it_uses_pbes2_with_scrypt_and_aes_256_cbc() -> None:
    pem = encrypt_private_key(ec.generate_private_key(ec.SECP256R1()), PASSPHRASE, salt=b"S" * 16, iv=b"I" * 16)
    dump = openssl_asn1parse(_pem_body(pem))
    objects = [line.split(":")[-1].strip() for line in dump.splitlines() if "OBJECT" in line]
    assert objects == ["PBES2", "scrypt", "aes-256-cbc"]
    integers = [line.split(":")[-1].strip() for line in dump.splitlines() if "INTEGER" in line]
    assert integers == ["4000", "08", "01", "20"]  # N = 2**14, r = 8, p = 1, key length 32
    assert ":SSSSSSSSSSSSSSSS" in dump  # the salt
    assert ":IIIIIIIIIIIIIIII" in dump  # the IV


def test_it_is_deterministic_given_salt_and_iv_and_fresh_otherwise() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    first = encrypt_private_key(key, PASSPHRASE, salt=b"s" * 16, iv=b"i" * 16)
    assert encrypt_private_key(key, PASSPHRASE, salt=b"s" * 16, iv=b"i" * 16) == first
    assert encrypt_private_key(key, PASSPHRASE) != encrypt_private_key(key, PASSPHRASE)


def test_it_writes_keys_that_openssl_opens(tmp_path: Path) -> None:
    key = _rsa_fixture()
    path = tmp_path / "ca.key"
    path.write_bytes(encrypt_private_key(key, PASSPHRASE))
    result = subprocess.run(
        ["openssl", "pkey", "-in", str(path), "-passin", f"pass:{PASSPHRASE.decode()}", "-outform", "DER"],
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    opened = serialization.load_der_private_key(result.stdout, None)
    assert isinstance(opened, rsa.RSAPrivateKey)
    assert opened.private_numbers() == key.private_numbers()


def test_it_writes_keys_that_openssl_refuses_with_a_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "ca.key"
    path.write_bytes(encrypt_private_key(ec.generate_private_key(ec.SECP384R1()), PASSPHRASE))
    result = subprocess.run(
        ["openssl", "pkey", "-in", str(path), "-passin", "pass:wrong", "-noout"], capture_output=True, check=False
    )
    assert result.returncode != 0


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()])
def test_it_round_trips_ec_keys(curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve)
    loaded = load_private_key(encrypt_private_key(key, PASSPHRASE), PASSPHRASE)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert loaded.private_numbers() == key.private_numbers()


def test_it_round_trips_rsa_keys() -> None:
    key = _rsa_fixture()
    loaded = load_private_key(encrypt_private_key(key, PASSPHRASE), PASSPHRASE)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    assert loaded.private_numbers() == key.private_numbers()


def test_it_refuses_a_wrong_passphrase() -> None:
    pem = encrypt_private_key(ec.generate_private_key(ec.SECP256R1()), PASSPHRASE)
    with pytest.raises(KeyRejected, match="wrong passphrase"):
        load_private_key(pem, b"wrong")


def test_it_refuses_an_encrypted_key_without_a_passphrase() -> None:
    pem = encrypt_private_key(ec.generate_private_key(ec.SECP256R1()), PASSPHRASE)
    with pytest.raises(KeyRejected, match="do not go together"):
        load_private_key(pem, None)


def test_it_refuses_a_passphrase_for_an_unencrypted_key() -> None:
    with pytest.raises(KeyRejected, match="do not go together"):
        load_private_key(fixture_bytes("ca-p384.key"), PASSPHRASE)


def test_it_refuses_to_encrypt_with_an_empty_passphrase() -> None:
    with pytest.raises(KeyRejected, match="empty passphrase"):
        encrypt_private_key(ec.generate_private_key(ec.SECP256R1()), b"")


@pytest.mark.parametrize("data", [b"", b"not a key", fixture_bytes("client-rsa2048.csr")])
def test_it_refuses_things_that_are_not_private_keys(data: bytes) -> None:
    with pytest.raises(KeyRejected, match="not a PEM private key"):
        load_private_key(data, None)


def test_it_refuses_ed25519_keys() -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyRejected, match="keys are not supported; use RSA or ECDSA"):
        load_private_key(pem, None)


def test_it_loads_the_legacy_openssl_ca_key() -> None:
    key = load_private_key(fixture_bytes("ca-legacy-rsa1024.key"), None)
    assert describe_key(key) == "rsa-1024"


# --- key names, public keys and hashes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [("ca-rsa2048.key", "rsa-2048"), ("ca-p384.key", "ecdsa-p384"), ("ca-legacy-rsa1024.key", "rsa-1024")],
)
def test_it_describes_keys_as_on_the_command_line(name: str, expected: str) -> None:
    key = load_private_key(fixture_bytes(name), None)
    assert describe_key(key) == expected
    assert describe_key(key.public_key()) == expected


def test_it_describes_other_curves_by_their_name() -> None:
    assert describe_key(ec.generate_private_key(ec.SECP256K1())) == "ecdsa-secp256k1"


@pytest.mark.parametrize(("key_type", "curve"), [("ecdsa-p256", "secp256r1"), ("ecdsa-p384", "secp384r1")])
def test_it_generates_ec_keys(key_type: str, curve: str) -> None:
    key = generate_private_key(key_type)  # type: ignore[arg-type]
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == curve


def test_it_generates_an_rsa_2048_key_with_exponent_65537() -> None:
    key = generate_private_key("rsa-2048")
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    assert key.public_key().public_numbers().e == 65537


def test_it_refuses_an_unknown_key_type() -> None:
    with pytest.raises(KeyRejected, match="unknown key type 'dsa-1024'; choose one of rsa-2048"):
        generate_private_key("dsa-1024")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "hash_name"),
    [("ca-p384.key", "sha384"), ("ca-rsa2048.key", "sha256"), ("ca-legacy-rsa1024.key", "sha256")],
)
def test_it_picks_the_signature_hash_from_the_key(name: str, hash_name: str) -> None:
    key = load_private_key(fixture_bytes(name), None)
    assert signature_hash(key).name == hash_name
    assert signature_hash(key.public_key()).name == hash_name


def test_it_signs_p256_with_sha256() -> None:
    assert isinstance(signature_hash(ec.generate_private_key(ec.SECP256R1())), hashes.SHA256)


def test_it_round_trips_public_keys_through_der() -> None:
    for name in ("ca-rsa2048.key", "ca-p384.key"):
        public = load_private_key(fixture_bytes(name), None).public_key()
        assert public_key_der(load_public_key_der(public_key_der(public))) == public_key_der(public)


def test_it_refuses_an_ed25519_public_key() -> None:
    data = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(KeyRejected, match="not supported"):
        load_public_key_der(data)


# --- der: the hand-written PKCS#8 encoder ---------------------------------------------------------


@pytest.mark.parametrize(
    ("dotted", "encoded"),
    [
        ("1.2.840.113549.1.5.13", "06092a864886f70d01050d"),  # PBES2
        ("1.3.6.1.4.1.11591.4.11", "06092b06010401da47040b"),  # scrypt
        ("2.16.840.1.101.3.4.1.42", "060960864801650304012a"),  # aes256-CBC
        ("1.2.840.10045.4.3.3", "06082a8648ce3d040303"),  # ecdsa-with-SHA384
        ("2.5.29.19", "0603551d13"),  # basicConstraints
        ("2.999.3", "0603883703"),  # X.690 8.19.5 example: the joint first subidentifier needs two octets
    ],
)
def test_it_encodes_oids(dotted: str, encoded: str) -> None:
    assert der.oid(dotted) == bytes.fromhex(encoded)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "020100"),
        (1, "020101"),
        (8, "020108"),
        (32, "020120"),
        (127, "02017f"),
        (128, "02020080"),
        (255, "020200ff"),
        (256, "02020100"),
        (2**14, "02024000"),
        (65537, "0203010001"),
    ],
)
def test_it_encodes_non_negative_integers(value: int, encoded: str) -> None:
    assert der.integer(value) == bytes.fromhex(encoded)


def test_it_refuses_negative_integers() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        der.integer(-1)


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, "0400"),
        (127, "047f"),
        (128, "048180"),
        (200, "0481c8"),
        (255, "0481ff"),
        (256, "04820100"),
        (300, "0482012c"),
    ],
)
def test_it_encodes_short_and_long_lengths(length: int, header: str) -> None:
    encoded = der.octet_string(b"\xaa" * length)
    assert encoded == bytes.fromhex(header) + b"\xaa" * length


def test_it_encodes_a_three_octet_length() -> None:
    assert der.octet_string(b"\x00" * 65536)[:5] == bytes.fromhex("0483010000")


def test_it_nests_sequences() -> None:
    assert der.sequence(der.integer(1), der.sequence()) == bytes.fromhex("3005020101" + "3000")


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=2**4096))
def test_it_encodes_integers_as_pyasn1_does(value: int) -> None:
    assert der.integer(value) == pyasn1_der.encode(univ.Integer(value))


@settings(max_examples=100)
@given(st.binary(max_size=70_000))
def test_it_encodes_octet_strings_as_pyasn1_does(value: bytes) -> None:
    assert der.octet_string(value) == pyasn1_der.encode(univ.OctetString(value))


_OIDS = st.one_of(
    st.tuples(st.integers(0, 1), st.integers(0, 39)),
    st.tuples(st.just(2), st.integers(0, 2**40)),
).flatmap(lambda head: st.lists(st.integers(0, 2**64), max_size=8).map(lambda tail: (*head, *tail)))


@settings(max_examples=200)
@given(_OIDS)
def test_it_encodes_oids_as_pyasn1_does(arcs: tuple[int, ...]) -> None:
    dotted = ".".join(str(arc) for arc in arcs)
    assert der.oid(dotted) == pyasn1_der.encode(univ.ObjectIdentifier(dotted))
