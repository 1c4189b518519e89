"""services.certificate_request_create + services.certificate_issue: record before sign (T6-T16)."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.utils import timezone

from authority import issuance, keystore, services
from authority.audit import audit_verify
from authority.models import AuditEvent, Certificate, CertificateAuthority, CertificateRequest, IssuanceIntent
from authority.services import AuthorityError, certificate_issue, certificate_request_create
from pki.ca import certificate_pem
from pki.errors import CsrRejected, IssuanceRefused, NameRejected
from pki.keys import encrypt_private_key, public_key_der
from pki.profiles import SERIAL_BITS
from tests.conftest import fixture_bytes

pytestmark = pytest.mark.django_db

FQDN = "client.example.com"
CSR = fixture_bytes("client-rsa2048.csr").decode()
ROOT = Path(__file__).resolve().parents[2]


def _request(*, fqdn: str = FQDN, csr: str = CSR, **overrides: Any) -> CertificateRequest:
    options: dict[str, Any] = {
        "fqdn": fqdn,
        "kind": "client",
        "csr_pem": csr,
        "validity_days": None,
        "requested_by": None,
        "approved_by": None,
        "actor": "test",
        "enqueue": False,
    }
    options.update(overrides)
    return certificate_request_create(**options)


def _counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count() for model in (CertificateRequest, IssuanceIntent, Certificate, AuditEvent)
    }


def _actions() -> list[str]:
    """The business events, in order (the persona fixtures' role grants are events too, but not ours)."""
    events = AuditEvent.objects.exclude(action__startswith="role.").order_by("seq")
    return list(events.values_list("action", flat=True))


# --- the happy path -------------------------------------------------------------------------


def test_it_issues_a_certificate_that_matches_its_intent(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    request = _request(requested_by=owner, approved_by=admin, actor=admin)
    assert request.status == CertificateRequest.Status.PENDING
    assert not IssuanceIntent.objects.exists()

    stored = certificate_issue(request_id=request.pk)

    assert stored is not None
    request.refresh_from_db()
    assert request.status == CertificateRequest.Status.ISSUED
    intent = IssuanceIntent.objects.get(request=request)
    cert = x509.load_der_x509_certificate(bytes(stored.der))
    assert stored.serial == intent.serial
    assert cert.serial_number == int(intent.serial, 16)
    assert cert.tbs_certificate_bytes == bytes(intent.tbs_der)
    assert (stored.not_before, stored.not_after) == (intent.not_before, intent.not_after)
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == FQDN
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [FQDN]
    csr = x509.load_pem_x509_csr(CSR.encode())
    assert public_key_der(cert.public_key()) == public_key_der(csr.public_key())  # type: ignore[arg-type]
    assert stored.fqdn == FQDN
    assert stored.ca == ca
    assert stored.pem.startswith("-----BEGIN CERTIFICATE-----")


def test_it_audits_requested_intent_and_issued(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    request = _request(requested_by=owner, approved_by=admin, actor=admin)
    stored = certificate_issue(request_id=request.pk)
    assert stored is not None

    assert _actions() == ["ca.imported", "certificate.requested", "certificate.intent", "certificate.issued"]
    requested, intent_event, issued = AuditEvent.objects.filter(action__startswith="certificate.").order_by("seq")
    assert requested.actor == "user:carol"
    assert requested.target == f"request:{request.pk}"
    assert requested.data["fqdn"] == FQDN
    assert intent_event.actor == "signer"
    assert intent_event.data["serial"] == stored.serial
    assert intent_event.data["tbs_sha256"] == request.intent.tbs_sha256
    assert issued.target == f"certificate:{stored.serial}"
    assert issued.data["fingerprint_sha256"] == stored.fingerprint_sha256
    assert audit_verify().ok


def test_it_caps_the_validity_at_the_requested_days(ca: CertificateAuthority) -> None:
    stored = certificate_issue(request_id=_request(validity_days=30).pk)

    assert stored is not None
    # notBefore is backdated by an hour; notAfter is 30 days from now.
    assert stored.not_after - stored.not_before == dt.timedelta(days=30, hours=1)


def test_it_is_safe_to_call_twice(ca: CertificateAuthority) -> None:
    request = _request()
    first = certificate_issue(request_id=request.pk)
    before = _counts()

    second = certificate_issue(request_id=request.pk)

    assert first is not None
    assert second == first
    assert second.der == first.der
    assert _counts() == before
    assert before["Certificate"] == before["IssuanceIntent"] == 1


def test_it_draws_unique_serials_in_range(ca: CertificateAuthority) -> None:
    certificates = [certificate_issue(request_id=_request().pk) for _ in range(8)]

    serials = [int(cert.serial, 16) for cert in certificates if cert is not None]
    assert len(set(serials)) == 8
    assert all(0 < serial < 2**SERIAL_BITS for serial in serials)
    # 159 random bits: the chance that all eight fit in 120 bits is 2**-312.
    assert max(serial.bit_length() for serial in serials) > 120


def test_it_fails_the_request_when_the_ca_expires_before_signing(ca: CertificateAuthority) -> None:
    request = _request()
    CertificateAuthority.objects.filter(pk=ca.pk).update(not_after=timezone.now() + dt.timedelta(hours=2))

    assert certificate_issue(request_id=request.pk) is None

    request.refresh_from_db()
    assert request.status == CertificateRequest.Status.FAILED
    assert "renew the CA first" in request.failure_reason
    assert not IssuanceIntent.objects.exists()
    assert not Certificate.objects.exists()
    assert _actions()[-1] == "certificate.failed"
    before = _counts()
    assert certificate_issue(request_id=request.pk) is None
    assert _counts() == before


# --- bad input: refused before anything is written --------------------------------------------

BAD_CSRS = [
    ("weak-rsa1024.csr", "the RSA key has 1024 bits; at least 2048 are required"),
    ("weak-e3.csr", "the RSA public exponent is 3; only 65537 is accepted"),
    ("weak-fermat.csr", "two primes are so close that the key can be factored"),
    ("weak-p224.csr", "the elliptic curve secp224r1 is not accepted"),
    ("weak-secp256k1.csr", "the elliptic curve secp256k1 is not accepted"),
    ("ed25519.csr", "keys are not accepted; use RSA"),
    ("asks-ca-true.csr", "asks to be a CA (CA:TRUE)"),
    ("asks-extra-san.csr", "asks for names other than client.example.com: DNS:evil.example.com"),
    ("asks-any-eku.csr", "asks for any extended key usage"),
    ("other-cn.csr", "is for 'other.example.com', not for 'client.example.com'"),
    ("bad-signature.csr", "signature does not verify"),
    ("client-rsa2048.key", "this is a private key, not a certificate request"),
    ("ca-rsa2048.crt", "this is a PEM CERTIFICATE, not a CERTIFICATE REQUEST"),
]


def _hostile_csr_texts() -> list[Any]:
    lines = CSR.splitlines()
    damaged = "\n".join([lines[0], lines[1][:10] + "!!!!" + lines[1][14:], *lines[2:]]) + "\n"
    cases = [
        ("empty", "", "this is not a PEM certificate request"),
        ("garbage", "hello\x00world", "this is not a PEM certificate request"),
        ("two-requests", CSR + CSR, "more than one PEM block"),
        ("text-around-it", "my csr:\n" + CSR, "extra text before or after"),
        ("damaged-body", damaged, "damaged and cannot be read"),
        ("oversized", CSR + "#" * 9000, "at most 8192 are accepted"),
    ]
    return [pytest.param(text, message, id=label) for label, text, message in cases]


@pytest.mark.parametrize(("name", "message"), BAD_CSRS)
def test_it_refuses_a_weak_or_hostile_csr_fixture(ca: CertificateAuthority, name: str, message: str) -> None:
    before = _counts()

    with pytest.raises(CsrRejected, match=re.escape(message)):
        _request(csr=fixture_bytes(name).decode())

    assert _counts() == before


@pytest.mark.parametrize(("text", "message"), _hostile_csr_texts())
def test_it_refuses_a_csr_text_that_is_not_one_clean_request(ca: CertificateAuthority, text: str, message: str) -> None:
    before = _counts()

    with pytest.raises(CsrRejected, match=re.escape(message)):
        _request(csr=text)

    assert _counts() == before


BAD_CHARACTERS = ["\n", "\r", '"', "'", ",", " ", "#", "\\", ";", "/", "=", "*", "\x00", "\t", "{", "$"]


@pytest.mark.parametrize("character", BAD_CHARACTERS, ids=repr)
def test_it_refuses_an_fqdn_with_a_character_that_could_break_a_config_file(
    ca: CertificateAuthority, character: str
) -> None:
    before = _counts()

    with pytest.raises(NameRejected, match="contains characters that are not allowed") as refused:
        _request(fqdn=f"cli{character}ent.example.com")

    assert repr(character) in str(refused.value)
    assert _counts() == before


@pytest.mark.parametrize(
    ("fqdn", "message"),
    [
        ("clïent.example.com", "non-ASCII characters; use the punycode"),
        ("client.example.com\u200b", "non-ASCII"),
        ("a" * 64 + ".example.com", "is 64 characters long; the maximum is 63"),
        (".".join(["a" * 60] * 3), "is 182 characters long; the maximum is 127"),
        ("Client.example.com", "must be lower case"),
        ("client.example.com.", "must not end with a dot"),
        ("client..example.com", "empty label"),
        ("-client.example.com", "must not start or end with a hyphen"),
        ("localhost", "at least two labels"),
        ("10.0.0.1", "cannot be all digits"),
        ("", "the FQDN is empty"),
    ],
)
def test_it_refuses_a_malformed_fqdn(ca: CertificateAuthority, fqdn: str, message: str) -> None:
    before = _counts()

    with pytest.raises(NameRejected, match=re.escape(message)):
        _request(fqdn=fqdn)

    assert _counts() == before


@pytest.mark.parametrize("days", [0, 826])
def test_it_refuses_a_validity_outside_the_profile(ca: CertificateAuthority, days: int) -> None:
    before = _counts()

    with pytest.raises(IssuanceRefused, match="between 1 and 825 days"):
        _request(validity_days=days)

    assert _counts() == before


def test_it_refuses_an_unknown_kind(ca: CertificateAuthority) -> None:
    before = _counts()

    with pytest.raises(AuthorityError, match="client or server"):
        _request(kind="router")

    assert _counts() == before


def test_it_refuses_a_request_before_there_is_a_ca() -> None:
    with pytest.raises(AuthorityError, match="there is no CA yet"):
        _request()

    assert _counts() == {"CertificateRequest": 0, "IssuanceIntent": 0, "Certificate": 0, "AuditEvent": 0}


# --- a CA near its end ------------------------------------------------------------------------


def _short_lived_ca(lifetime: dt.timedelta) -> CertificateAuthority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Short-lived CA")])
    now = timezone.now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=365))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return services.ca_import(
        cert_pem=certificate_pem(cert).encode(),
        key_pem=encrypt_private_key(key, b"pass"),
        key_passphrase=b"pass",
        allow_legacy=False,
        actor="test",
    )


def test_it_refuses_a_request_when_the_ca_expires_within_a_day(signer: None, key_dir: Path) -> None:
    _short_lived_ca(dt.timedelta(hours=12))
    before = _counts()

    with pytest.raises(IssuanceRefused, match="renew the CA first"):
        _request()

    assert _counts() == before


def test_it_never_issues_past_the_ca_expiry(signer: None, key_dir: Path) -> None:
    ca = _short_lived_ca(dt.timedelta(days=10))

    stored = certificate_issue(request_id=_request(validity_days=365).pk)

    assert stored is not None
    assert stored.not_after <= ca.not_after
    assert x509.load_der_x509_certificate(bytes(stored.der)).not_valid_after_utc <= ca.certificate.not_valid_after_utc


# --- crash between the intent and the signature (T12, T13) --------------------------------------


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_re_signs_the_recorded_tbs_with_the_same_serial_after_a_crash(
    ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = _request()

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the signer died")

    monkeypatch.setattr(issuance, "sign_tbs", crash)
    with pytest.raises(RuntimeError, match="the signer died"):
        certificate_issue(request_id=request.pk)

    # Tx A committed: the intent (serial + TBS) is on record, the certificate is not.
    intent = IssuanceIntent.objects.get(request=request)
    assert not Certificate.objects.exists()
    request.refresh_from_db()
    assert request.status == CertificateRequest.Status.SIGNING
    assert _actions()[-1] == "certificate.intent"

    monkeypatch.undo()
    stored = certificate_issue(request_id=request.pk)

    assert stored is not None
    assert stored.serial == intent.serial
    assert x509.load_der_x509_certificate(bytes(stored.der)).tbs_certificate_bytes == bytes(intent.tbs_der)
    assert IssuanceIntent.objects.count() == 1
    assert Certificate.objects.count() == 1
    request.refresh_from_db()
    assert request.status == CertificateRequest.Status.ISSUED
    assert _actions()[-3:] == ["certificate.requested", "certificate.intent", "certificate.issued"]
    assert audit_verify().ok


# --- serial collisions (T15) -------------------------------------------------------------------


def test_it_draws_a_new_serial_after_a_collision(
    ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = issuance.new_serial
    forced = [0x1234, 0x1234]  # the first request's draw, then the second request's first draw

    monkeypatch.setattr(issuance, "new_serial", lambda: forced.pop(0) if forced else original())
    first = certificate_issue(request_id=_request().pk)
    second = certificate_issue(request_id=_request().pk)

    assert first is not None
    assert second is not None
    assert first.serial == "1234"
    assert second.serial != "1234"
    assert second.request.intent.serial == second.serial
    assert "serial collision" in caplog.text
    assert Certificate.objects.filter(serial="1234").count() == 1


def test_it_gives_up_when_every_serial_collides_and_leaves_the_request_to_retry(
    ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    draws: list[int] = []

    def constant() -> int:
        draws.append(0x1234)
        return 0x1234

    monkeypatch.setattr(issuance, "new_serial", constant)
    first = certificate_issue(request_id=_request().pk)
    assert first is not None
    assert first.serial == "1234"
    request = _request()
    before = _counts()
    draws.clear()

    with pytest.raises(AuthorityError, match="could not allocate a unique serial"):
        certificate_issue(request_id=request.pk)

    assert len(draws) == 5
    assert _counts() == before  # no intent, no certificate, no event
    request.refresh_from_db()
    assert request.status == CertificateRequest.Status.PENDING  # the sweeper queues it again

    monkeypatch.undo()
    retried = certificate_issue(request_id=request.pk)
    assert retried is not None
    assert retried.serial != "1234"


# --- the web process cannot sign (T20) -----------------------------------------------------------


@pytest.fixture
def ca_without_signer(db: Any, key_dir: Path) -> Iterator[CertificateAuthority]:
    """A CA imported on the CA host (signing on), seen from a process that is not a signer (signing off)."""
    keystore.enable_signing()
    try:
        ca = services.ca_import(
            cert_pem=fixture_bytes("ca-rsa2048.crt"),
            key_pem=fixture_bytes("ca-rsa2048.key"),
            key_passphrase=None,
            allow_legacy=False,
            actor="test",
        )
    finally:
        keystore._signing_enabled = False
        keystore.forget_keys()
    yield ca
    keystore._signing_enabled = False
    keystore.forget_keys()


def test_it_cannot_sign_outside_a_signer_process(ca_without_signer: CertificateAuthority) -> None:
    request = _request()
    # The files are there and readable: only the process's role stands in the way.
    assert Path(settings.CA_KEY_PASSPHRASE_FILE).read_bytes().strip()
    assert (Path(settings.CA_KEY_DIR) / ca_without_signer.key_file).is_file()

    with pytest.raises(keystore.SignerUnavailable, match="not a signer"):
        certificate_issue(request_id=request.pk)

    assert not Certificate.objects.exists()
    request.refresh_from_db()
    assert request.status != CertificateRequest.Status.ISSUED
    assert "certificate.issued" not in _actions()
    with pytest.raises(keystore.SignerUnavailable):
        keystore.signing_key(ca_without_signer)

    # The signer worker picks the request up later and finishes it under the recorded serial.
    # If the refused attempt recorded an intent, that serial and TBS are the ones signed.
    recorded = IssuanceIntent.objects.filter(request=request).values_list("serial", flat=True).first()
    keystore.enable_signing()
    stored = certificate_issue(request_id=request.pk)
    assert stored is not None
    assert stored.serial == (recorded or stored.serial)
    assert IssuanceIntent.objects.filter(request=request).count() == 1


WSGI_PROBE = """
from pathlib import Path

import ca_portal.wsgi  # what gunicorn imports
from django.conf import settings
from authority import keystore

assert ca_portal.wsgi.application is not None
assert keystore.signing_enabled() is False, "the web process is a signer"
assert Path(settings.CA_KEY_PASSPHRASE_FILE).read_bytes(), "the probe needs a readable passphrase file"
try:
    keystore.read_passphrase()
except keystore.SignerUnavailable as exc:
    print("refused:", exc)
else:
    raise SystemExit("the web process read the CA key passphrase")
"""


def test_it_never_lets_the_wsgi_process_read_the_passphrase(tmp_path: Path) -> None:
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("a-passphrase-the-web-tier-must-not-read\n")
    passphrase.chmod(0o600)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "CA_KEY_PASSPHRASE_FILE": str(passphrase)}

    result = subprocess.run(
        [sys.executable, "-c", WSGI_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stderr
    assert "refused: this process is not a signer" in result.stdout
    assert "a-passphrase-the-web-tier-must-not-read" not in result.stdout + result.stderr
