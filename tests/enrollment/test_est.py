"""EST (RFC 7030) under /.well-known/est/: cacerts, simpleenroll, simplereenroll, through the real services.

Every enrollment goes through the approval workflow: 202 with Retry-After until a CA admin approves
and the signer issues, then 200 with the certificate. A retry is the same request again (same
owner, FQDN and key); nobody else's retry ever finds it.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.test import Client

from authority.models import AuditEvent, CertificateAuthority, CertificateRequest
from authority.services import certificates_issue_pending
from enrollment.models import Peer
from enrollment.services import peer_approve, peer_reject, peer_revoke, policy_update
from tests.bundles.conftest import issue
from tests.conftest import fixture_bytes
from tests.pkitools import openssl_verify, pkilint_errors

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"
FQDN = "laptop.example.org"
ENROLL = "/.well-known/est/simpleenroll"
REENROLL = "/.well-known/est/simplereenroll"
CACERTS = "/.well-known/est/cacerts"
PKCS10 = "application/pkcs10"

# ECDSA keys cost nothing to make, so each test module run has its own; RSA comes from the fixtures.
KEY_A = ec.generate_private_key(ec.SECP256R1())
KEY_B = ec.generate_private_key(ec.SECP256R1())
KEY_RSA = serialization.load_pem_private_key(fixture_bytes("client-rsa2048.key"), None)


def _request_der(key: Any, fqdn: str = FQDN, *, san: bool = True, cn: str | None = None) -> bytes:
    """A PKCS#10 request as `pki --req --dn CN=... --san FQDN` makes it (or CN only, with ``san=False``)."""
    name = cn if cn is not None else fqdn
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)] if name else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(fqdn)]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _body(key: Any, fqdn: str = FQDN, **options: Any) -> bytes:
    return base64.b64encode(_request_der(key, fqdn, **options))


def _auth(username: str, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _post(
    path: str,
    body: bytes,
    *,
    user: str | None = "alice",
    password: str = PASSWORD,
    client: Client | None = None,
    **extra: Any,
) -> Any:
    headers = dict(extra)
    if user is not None:
        headers["HTTP_AUTHORIZATION"] = _auth(user, password)
    headers.setdefault("content_type", PKCS10)
    headers.setdefault("CONTENT_TYPE", headers["content_type"])  # the test client drops it for an empty body
    return (client or Client()).post(path, body, **headers)


def _public_key(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _issued_certificates(response: Any) -> list[x509.Certificate]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/pkcs7-mime; smime-type=certs-only"
    assert b"\n" not in response.content  # one base64 line: strongSwan's decoder does not skip line breaks
    return list(pkcs7.load_der_pkcs7_certificates(base64.b64decode(response.content, validate=True)))


def _sign_pending() -> None:
    """The signer's turn: issue every approved request (what the signer worker runs)."""
    certificates_issue_pending()


def _world() -> tuple[Any, ...]:
    return (
        list(Peer.objects.order_by("pk").values_list("pk", "owner__username", "fqdn", "decision", "renews_id")),
        CertificateRequest.objects.count(),
        list(AuditEvent.objects.exclude(action="auth.login_failed").values_list("seq", "action")),
    )


# --- cacerts ---------------------------------------------------------------------------------------


def test_it_serves_the_ca_certificate_as_certs_only_pkcs7_without_login(ca: CertificateAuthority) -> None:
    response = Client().get(CACERTS)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pkcs7-mime"
    assert response["Content-Transfer-Encoding"] == "base64"
    certificates = pkcs7.load_der_pkcs7_certificates(base64.b64decode(response.content, validate=True))
    assert certificates == [ca.certificate]
    assert not response.cookies


def test_a_half_signed_in_admin_session_does_not_get_in_the_way(ca: CertificateAuthority, admin: Any) -> None:
    """EST ignores sessions, so the two-factor redirect of the pages does not apply to it."""
    client = Client()
    client.force_login(admin)  # password only: two-factor not done

    assert client.get(CACERTS).status_code == 200
    assert _post(ENROLL, _body(KEY_A), user=None, client=client).status_code == 401


def test_it_answers_cacerts_without_a_ca_with_a_plain_404(db: Any) -> None:
    response = Client().get(CACERTS)

    assert response.status_code == 404
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert b"no CA" in response.content


@pytest.mark.parametrize(("method", "path"), [("post", CACERTS), ("get", ENROLL), ("get", REENROLL), ("put", ENROLL)])
def test_it_refuses_the_wrong_method(ca: CertificateAuthority, owner: Any, method: str, path: str) -> None:
    response = getattr(Client(), method)(path, HTTP_AUTHORIZATION=_auth("alice"))

    assert response.status_code == 405
    assert not Peer.objects.exists()


# --- simpleenroll: the whole way, through the approval workflow ------------------------------------


def test_it_enrolls_through_approval_and_signing(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    body = _body(KEY_A)

    first = _post(ENROLL, body)

    assert first.status_code == 202, first.content
    assert first["Retry-After"] == str(settings.EST_RETRY_AFTER_SECONDS)
    assert first["Content-Type"] == "text/plain; charset=utf-8"
    assert b"waiting for a CA admin" in first.content
    assert not first.cookies  # no session, no cookie
    peer = Peer.objects.get()
    assert (peer.owner, peer.fqdn, peer.kind, peer.status) == (owner, FQDN, "client", "pending")
    registered = AuditEvent.objects.get(action="peer.registered")
    assert (registered.actor, registered.target) == ("est:alice", f"peer:{peer.pk}")
    assert registered.data["owner"] == "alice"

    # Polling with the same request finds the same peer: nothing new is registered or audited.
    before = _world()
    again = _post(ENROLL, body)
    assert again.status_code == 202
    assert _world() == before

    peer_approve(peer_id=peer.pk, approver=admin, actor=admin, enqueue=False)
    approved = _post(ENROLL, body)
    assert approved.status_code == 202
    assert approved["Retry-After"] == "5"
    assert b"being signed" in approved.content

    _sign_pending()
    done = _post(ENROLL, body)

    [certificate] = _issued_certificates(done)
    assert done["Content-Transfer-Encoding"] == "base64"
    assert _public_key(certificate) == _public_key(KEY_A)
    assert certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == [FQDN]
    peer.refresh_from_db()
    assert peer.status == "issued"
    assert bytes(peer.certificate_request.certificate.der) == certificate.public_bytes(serialization.Encoding.DER)
    openssl_verify(certificate.public_bytes(serialization.Encoding.PEM), ca.certificate_pem.encode())
    assert pkilint_errors(certificate.public_bytes(serialization.Encoding.DER)) == []
    assert Peer.objects.count() == 1
    assert list(AuditEvent.objects.filter(target=f"peer:{peer.pk}").values_list("action", "actor")) == [
        ("peer.registered", "est:alice"),
        ("peer.approved", "user:carol"),
    ]


def test_it_takes_the_fqdn_from_the_cn_without_a_subject_alt_name(ca: CertificateAuthority, owner: Any) -> None:
    response = _post(ENROLL, _body(KEY_RSA, "client.example.com", san=False))

    assert response.status_code == 202, response.content
    assert Peer.objects.get().fqdn == "client.example.com"


def test_it_accepts_wrapped_base64_and_ignores_a_transfer_encoding_header(ca: CertificateAuthority, owner: Any) -> None:
    text = base64.b64encode(_request_der(KEY_A)).decode("ascii")
    wrapped = "\r\n".join(text[i : i + 64] for i in range(0, len(text), 64)) + "\r\n"

    response = _post(ENROLL, wrapped.encode("ascii"), HTTP_CONTENT_TRANSFER_ENCODING="base64")

    assert response.status_code == 202, response.content


def test_it_needs_no_csrf_token(ca: CertificateAuthority, owner: Any) -> None:
    response = _post(ENROLL, _body(KEY_A), client=Client(enforce_csrf_checks=True))

    assert response.status_code == 202
    assert "csrftoken" not in response.cookies


def test_another_users_retry_never_finds_the_peer(
    ca: CertificateAuthority, owner: Any, other_user: Any, admin: Any
) -> None:
    body = _body(KEY_A)
    assert _post(ENROLL, body).status_code == 202
    peer = Peer.objects.get()
    peer_approve(peer_id=peer.pk, approver=admin, actor=admin, enqueue=False)
    _sign_pending()
    before = _world()

    stolen = _post(ENROLL, body, user="mallory")

    assert stolen.status_code == 409
    assert stolen["Content-Type"] == "text/plain; charset=utf-8"
    assert stolen.content == f"{FQDN} is already registered\n".encode()
    assert _world() == before
    assert _post(ENROLL, body).status_code == 200  # alice still gets hers


def test_an_fqdn_registered_by_someone_else_is_refused_as_the_api_does(
    ca: CertificateAuthority, owner: Any, other_user: Any
) -> None:
    assert _post(ENROLL, _body(KEY_A), user="mallory").status_code == 202
    before = _world()

    response = _post(ENROLL, _body(KEY_B))

    assert response.status_code == 409
    assert response.content == f"{FQDN} is already registered\n".encode()
    assert _world() == before


def test_an_owner_with_an_issued_certificate_is_told_to_reenroll(
    ca: CertificateAuthority, owner: Any, admin: Any
) -> None:
    issue(owner, admin, FQDN)

    response = _post(ENROLL, _body(KEY_B))

    assert response.status_code == 409
    assert b"simplereenroll" in response.content


def test_a_rejected_request_is_answered_with_the_reason(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    body = _body(KEY_A)
    _post(ENROLL, body)
    peer_reject(peer_id=Peer.objects.get().pk, approver=admin, reason="not one of our laptops", actor=admin)
    before = _world()

    response = _post(ENROLL, body)

    assert response.status_code == 409
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert b"rejected" in response.content
    assert b"not one of our laptops" in response.content
    assert _world() == before  # polling does not register the rejected request again


def test_a_revoked_key_does_not_enroll_again(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    body = _body(KEY_A)
    _post(ENROLL, body)
    peer = Peer.objects.get()
    peer_approve(peer_id=peer.pk, approver=admin, actor=admin, enqueue=False)
    _sign_pending()
    peer_revoke(peer_id=peer.pk, user=owner, reason="keyCompromise")
    before = _world()

    response = _post(ENROLL, body)

    assert response.status_code == 409
    assert b"revoked" in response.content
    assert _world() == before


def test_a_failed_signing_is_answered_with_its_reason(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    body = _body(KEY_A)
    _post(ENROLL, body)
    peer = peer_approve(peer_id=Peer.objects.get().pk, approver=admin, actor=admin, enqueue=False)
    CertificateRequest.objects.filter(pk=peer.certificate_request_id).update(
        status=CertificateRequest.Status.FAILED, failure_reason="the CA has expired"
    )

    response = _post(ENROLL, body)

    assert response.status_code == 409
    assert b"the CA has expired" in response.content


# --- who may enroll --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer abc", "Basic", "Basic !!!", "Basic " + base64.b64encode(b"alice").decode(), "Token abc"],
)
def test_it_asks_for_basic_credentials(ca: CertificateAuthority, owner: Any, authorization: str | None) -> None:
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}

    response = _post(ENROLL, _body(KEY_A), user=None, **extra)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Basic realm="ca_portal EST", charset="UTF-8"'
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert not Peer.objects.exists()


def test_a_session_is_not_a_credential(ca: CertificateAuthority, owner: Any) -> None:
    client = Client()
    client.force_login(owner)

    response = _post(ENROLL, _body(KEY_A), user=None, client=client)

    assert response.status_code == 401
    assert not Peer.objects.exists()


def test_an_inactive_user_is_refused(ca: CertificateAuthority, owner: Any) -> None:
    owner.is_active = False
    owner.save()

    assert _post(ENROLL, _body(KEY_A)).status_code == 401
    assert not Peer.objects.exists()


@pytest.mark.parametrize("path", [ENROLL, REENROLL])
def test_auditors_are_refused(ca: CertificateAuthority, auditor: Any, path: str) -> None:
    response = _post(path, _body(KEY_A), user="erin")

    assert response.status_code == 403
    assert b"auditors" in response.content
    assert not Peer.objects.exists()


def test_ca_admins_are_refused_while_two_factor_is_required(ca: CertificateAuthority, admin: Any) -> None:
    assert settings.OTP_REQUIRED_FOR_ADMINS

    response = _post(ENROLL, _body(KEY_A), user="carol")

    assert response.status_code == 403
    assert b"two-factor" in response.content
    assert not Peer.objects.exists()


def test_ca_admins_enroll_clients_when_two_factor_is_off(ca: CertificateAuthority, admin: Any, settings: Any) -> None:
    settings.OTP_REQUIRED_FOR_ADMINS = False

    response = _post(ENROLL, _body(KEY_A), user="carol")

    assert response.status_code == 202
    assert Peer.objects.get().owner == admin


def test_failures_lock_the_user_out_even_with_the_right_password(
    ca: CertificateAuthority, owner: Any, other_user: Any
) -> None:
    assert settings.AXES_FAILURE_LIMIT == 5
    body = _body(KEY_A)

    statuses = [_post(ENROLL, body, password=f"wrong {n}").status_code for n in range(5)]
    assert statuses == [401, 401, 401, 401, 403]  # the fifth failure already answers with the lockout

    locked = _post(ENROLL, body)  # the right password, sixth attempt

    assert locked.status_code == 403
    assert locked["Content-Type"] == "text/plain; charset=utf-8"
    assert b"too many failed sign-ins" in locked.content
    assert not Peer.objects.exists()
    failures = AuditEvent.objects.filter(action="auth.login_failed", target="username:alice")
    assert failures.count() == 6
    # The same lockout as the sign-in page: alice cannot sign in there either, mallory can.
    assert Client().post("/login/", {"username": "alice", "password": PASSWORD}).status_code == 429
    assert _post(ENROLL, body, user="mallory").status_code == 202


# --- hostile bodies --------------------------------------------------------------------------------


def _pem_body() -> bytes:
    der = _request_der(KEY_A)
    return x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    ("case", "body", "status", "message"),
    [
        ("empty", b"", 400, b"empty"),
        ("whitespace", b" \r\n\t ", 400, b"empty"),
        ("not base64", b"this is not base64!", 400, b"not base64"),
        ("binary", bytes(range(256)), 400, b"not base64"),
        ("base64 of junk", base64.b64encode(b"\x30\x82\x01\x00 not a request"), 400, b"not of a DER"),
        ("base64 of a certificate", base64.b64encode(fixture_bytes("ca-rsa2048.crt")), 400, b"not of a DER"),
        ("PEM instead of base64 DER", _pem_body(), 400, b"PEM"),
        ("base64 of DER plus junk", base64.b64encode(_request_der(KEY_A) + b"\x00"), 400, b"not of a DER"),
        ("huge", b"A" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1), 413, b"larger than"),
        ("over the CSR limit", base64.b64encode(b"\x30" * 9000), 400, b"at most 8192"),
        ("no name", base64.b64encode(_request_der(KEY_A, san=False, cn="")), 400, b"names no host"),
    ],
)
def test_hostile_bodies_are_refused_and_create_nothing(
    ca: CertificateAuthority, owner: Any, case: str, body: bytes, status: int, message: bytes
) -> None:
    before = _world()

    response = _post(ENROLL, body)

    assert response.status_code == status, response.content
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert message in response.content
    assert _world() == before


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("weak-rsa1024.csr", b"at least 2048"),
        ("bad-signature.csr", b"signature does not verify"),
        ("asks-ca-true.csr", b"CA:TRUE"),
        ("asks-extra-san.csr", b"evil.example.com"),
        ("client-nocn.csr", b"names no host"),
    ],
)
def test_the_services_vet_the_request_as_for_the_api(
    ca: CertificateAuthority, owner: Any, fixture: str, message: bytes
) -> None:
    der = x509.load_pem_x509_csr(fixture_bytes(fixture)).public_bytes(serialization.Encoding.DER)

    response = _post(ENROLL, base64.b64encode(der))

    assert response.status_code == 400, response.content
    assert message in response.content
    assert not Peer.objects.exists()


def test_an_upper_case_fqdn_is_refused_with_the_reason(ca: CertificateAuthority, owner: Any) -> None:
    response = _post(ENROLL, _body(KEY_A, "Laptop.Example.org"))

    assert response.status_code == 400
    assert b"lower case" in response.content


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"])
def test_only_pkcs10_bodies_are_read(ca: CertificateAuthority, owner: Any, content_type: str) -> None:
    """A cross-site form cannot send application/pkcs10 without a CORS preflight (see enrollment/est.py)."""
    response = Client().post(ENROLL, _body(KEY_A), content_type=content_type, HTTP_AUTHORIZATION=_auth("alice"))

    assert response.status_code == 415
    assert not Peer.objects.exists()


# --- simplereenroll --------------------------------------------------------------------------------


@pytest.fixture
def laptop(ca: CertificateAuthority, owner: Any, admin: Any) -> Peer:
    """alice's issued laptop, enrolled through EST with KEY_A."""
    _post(ENROLL, _body(KEY_A))
    peer = Peer.objects.get()
    peer_approve(peer_id=peer.pk, approver=admin, actor=admin, enqueue=False)
    _sign_pending()
    peer.refresh_from_db()
    assert peer.status == "issued"
    return peer


def test_it_renews_through_approval_and_signing(laptop: Peer, admin: Any) -> None:
    body = _body(KEY_B)

    first = _post(REENROLL, body)

    assert first.status_code == 202, first.content
    assert first["Retry-After"] == str(settings.EST_RETRY_AFTER_SECONDS)
    renewal = Peer.objects.get(renews=laptop)
    assert (renewal.owner_id, renewal.fqdn, renewal.status) == (laptop.owner_id, FQDN, "pending")
    before = _world()
    assert _post(REENROLL, body).status_code == 202
    assert _world() == before

    peer_approve(peer_id=renewal.pk, approver=admin, actor=admin, enqueue=False)
    _sign_pending()
    [certificate] = _issued_certificates(_post(REENROLL, body))

    assert _public_key(certificate) == _public_key(KEY_B)
    laptop.refresh_from_db()
    assert laptop.status == "issued"  # both work side by side until the renewal is in use (renewals_supersede)
    requested = AuditEvent.objects.get(action="peer.renewal_requested", target=f"peer:{renewal.pk}")
    assert requested.actor == f"est:{laptop.owner.get_username()}"  # the channel is on record


def test_a_renewal_the_policy_approves_is_signed_without_an_admin(laptop: Peer, admin: Any) -> None:
    policy_update(
        allowed_domains=[],
        default_validity_days=365,
        allow_self_approval=False,
        auto_approve_renewals=True,
        actor=admin,
    )
    body = _body(KEY_B)

    first = _post(REENROLL, body)

    assert first.status_code == 202
    assert first["Retry-After"] == "5"  # approved at once: only the signer is left
    _sign_pending()
    [certificate] = _issued_certificates(_post(REENROLL, body))
    assert _public_key(certificate) == _public_key(KEY_B)


def test_a_reenroll_for_someone_elses_fqdn_is_refused(laptop: Peer, other_user: Any) -> None:
    before = _world()

    response = _post(REENROLL, _body(KEY_B), user="mallory")

    assert response.status_code == 404
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert b"no issued client certificate" in response.content
    assert _world() == before


def test_a_reenroll_with_the_current_key_is_refused(laptop: Peer) -> None:
    before = _world()

    response = _post(REENROLL, _body(KEY_A))

    assert response.status_code == 409
    assert b"new key" in response.content
    assert _world() == before


def test_a_reenroll_without_an_issued_certificate_is_refused(ca: CertificateAuthority, owner: Any) -> None:
    _post(ENROLL, _body(KEY_A))  # pending, not issued
    before = _world()

    response = _post(REENROLL, _body(KEY_B))

    assert response.status_code == 404
    assert _world() == before


def test_a_reenroll_needs_credentials(laptop: Peer) -> None:
    response = _post(REENROLL, _body(KEY_B), user=None)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic ")
    assert not Peer.objects.filter(renews=laptop).exists()
