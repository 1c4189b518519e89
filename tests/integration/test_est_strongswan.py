"""EST against strongSwan's own client: ``pki --est`` enrolls a key it made, through approval, on a real portal.

A real deployment (devtools/stack.py): gunicorn with TLS (``pki --est`` speaks HTTPS only,
with strongSwan's own TLS stack, and checks the server's certificate against ``--cacert``) and a
real Celery worker that signs. strongSwan makes the key and the request (``pki --gen``, ``pki --req
--san``); ``pki --est`` is started in the background with HTTP Basic credentials and polls (202,
Retry-After) while a CA admin approves the peer through the JSON API; then it must write the issued
certificate, whose public key is the one of the key it made. ``pki --estca`` fetches cacerts, and a
second ``pki --est`` with ``--cert``/``--key`` renews through simplereenroll.

Needs strongSwan's ``pki`` (Debian: strongswan-pki, which pulls in libcharon-extra-plugins for its
TLS library). Skips without it, unless CA_PORTAL_REQUIRE_TOOLS=1 (CI), which turns the skip into
a failure.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devtools.stack import BIN, FIXTURES, ROOT, Stack, free_port, stop_group, wait_healthy

pytestmark = pytest.mark.integration

FQDN = "laptop.example.org"
PASSWORD = "correct horse battery staple"
POLL_LIMIT = 90  # seconds pki --est may poll (--maxpolltime)

USERS_SCRIPT = """
import json
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token
admins = Group.objects.get(name="ca-admin")
tokens = {}
for name, admin in (("alice", False), ("carol", True)):
    user = User.objects.create_user(name, name + "@example.org", "correct horse battery staple")
    if admin:
        user.groups.add(admins)
    tokens[name] = Token.objects.create(user=user).key
print(json.dumps(tokens))
"""


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CA_PORTAL_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{reason} and CA_PORTAL_REQUIRE_TOOLS=1")
    pytest.skip(reason)


def _pki() -> str:
    """strongSwan's pki, if it has the EST commands and the TLS library they need."""
    pki = shutil.which("pki")
    if pki is None:
        _unavailable("strongSwan's pki is not installed (apt-get install strongswan-pki)")
    usage = subprocess.run([pki, "--est", "--help"], capture_output=True, text=True, check=False)
    output = usage.stdout + usage.stderr
    if "--userpass" not in output:  # older than 5.9.8, or its libraries (libcharon-extra-plugins) missing
        last = output.strip().splitlines()[-1:] or ["no output"]
        _unavailable(f"strongSwan's pki --est is not usable here (5.9.8 or later is needed): {last[0]}")
    return pki


def _run(*command: str, out: Path | None = None, timeout: float = 60) -> bytes:
    """Run a tool and return its stdout (also written to ``out``); fail with its stderr."""
    result = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr.decode()}")
    if out is not None:
        out.write_bytes(result.stdout)
    return result.stdout


# --- a throwaway TLS PKI for gunicorn -----------------------------------------------------------------


def _key_usage(**flags: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement")
    names += ("key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: flags.get(n, False) for n in names})


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A TLS CA and a server certificate for 127.0.0.1 (pki --est checks the server's IP against it)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EST test TLS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "tls-ca.pem", directory / "tls.pem", directory / "tls.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


# --- the deployment ------------------------------------------------------------------------------------


@dataclass
class Portal:
    stack: Stack
    url: str  # https://127.0.0.1:PORT, what pki --est takes (it appends /.well-known/est/<operation>)
    http_url: str  # the same gunicorn's plain twin for the API calls of the test itself
    tls_ca: Path
    tokens: dict[str, str]
    web_log: Path

    def api(self, method: str, path: str, user: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 (loopback only)
            f"{self.http_url}{path}", data=data, method=method, headers={"Authorization": f"Token {self.tokens[user]}"}
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path} as {user}: {exc.code} {exc.read()[:500]!r}") from None

    def logs(self) -> str:
        worker = self.stack.worker_log.read_text(errors="replace")[-3000:] if self.stack.worker_log.exists() else ""
        web = self.web_log.read_text(errors="replace")[-3000:] if self.web_log.exists() else ""
        return f"--- worker log tail ---\n{worker}\n--- gunicorn log tail ---\n{web}"


def _gunicorn(stack: Stack, bind: str, log: Path, *tls: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "ca_portal.wsgi:application",
                "--bind",
                bind,
                "--workers",
                "2",
                "--access-logfile",
                "-",
                *tls,
            ],
            env=stack.env,  # no CA key passphrase path: the web tier never signs
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture(params=["embedded", "services"])
def portal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Portal]:
    _pki()  # skip (or fail in CI) before starting anything
    stack = Stack(tmp_path, request.param, db_prefix="ca_portal_it_est")
    # pki --est polls at the larger of --interval and the first Retry-After: keep the test quick.
    stack.env["EST_RETRY_AFTER_SECONDS"] = "1"
    tls_ca, tls_cert, tls_key = _tls_files(tmp_path)
    https_port, http_port = free_port(), free_port()
    web_log = tmp_path / "gunicorn.log"
    servers: list[subprocess.Popen[bytes]] = []
    try:
        stack.setup()
        tokens = json.loads(stack.manage("shell", "-c", USERS_SCRIPT).stdout.strip().splitlines()[-1])
        stack.start_worker(concurrency=1)
        servers.append(
            _gunicorn(stack, f"127.0.0.1:{https_port}", web_log, "--certfile", str(tls_cert), "--keyfile", str(tls_key))
        )
        servers.append(_gunicorn(stack, f"127.0.0.1:{http_port}", web_log))
        http_url = f"http://127.0.0.1:{http_port}"
        wait_healthy(http_url, servers[1], web_log)
        yield Portal(
            stack=stack,
            url=f"https://127.0.0.1:{https_port}",
            http_url=http_url,
            tls_ca=tls_ca,
            tokens=tokens,
            web_log=web_log,
        )
    finally:
        for server in servers:
            stop_group(server)
        stack.teardown()


# --- strongSwan's side -------------------------------------------------------------------------------


def _key_and_request(pki: str, directory: Path, name: str) -> tuple[Path, Path]:
    key, request = directory / f"{name}.key", directory / f"{name}.csr"
    _run(pki, "--gen", "--type", "rsa", "--size", "2048", "--outform", "pem", out=key)
    # As in README.md: a subjectAltName (--san) for the FQDN, and the same FQDN as the CN.
    request_command = ["--req", "--in", str(key), "--dn", f"CN={FQDN}", "--san", FQDN, "--outform", "der"]
    _run(pki, *request_command, out=request)
    return key, request


def _public_key_of_private(pki: str, key: Path) -> bytes:
    """The SubjectPublicKeyInfo of strongSwan's key, as strongSwan itself writes it (pki --pub)."""
    return _run(pki, "--pub", "--in", str(key), "--outform", "der")


def _est(portal: Portal, pki: str, request: Path, out: Path, *renew: str) -> subprocess.Popen[bytes]:
    """Start ``pki --est`` in the background, the way README.md shows it; the certificate goes to ``out``."""
    ca = FIXTURES / portal.stack.ca_cert
    with out.open("wb") as sink:  # the child keeps its own descriptor
        return subprocess.Popen(
            [
                pki, "--est", "--url", portal.url, "--in", str(request),
                "--cacert", str(portal.tls_ca), "--cacert", str(ca),
                "--userpass", f"alice:{PASSWORD}", "--interval", "1", "--maxpolltime", str(POLL_LIMIT),
                "--outform", "der", *renew,
            ],
            stdout=sink,
            stderr=subprocess.PIPE,
        )  # fmt: skip


def _finish(portal: Portal, process: subprocess.Popen[bytes]) -> str:
    try:
        _, stderr = process.communicate(timeout=POLL_LIMIT + 30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    log = stderr.decode(errors="replace")
    assert process.returncode == 0, f"pki --est exited {process.returncode}:\n{log}\n{portal.logs()}"
    return log


def _access_logged(portal: Portal, *lines: str, timeout: float = 30) -> None:
    """Each of ``lines`` is in gunicorn's access log. A worker logs a request after it has sent the
    response, so pki may have its certificate (and exited) a moment before the line is written."""
    deadline = time.monotonic() + timeout
    while True:
        access = portal.web_log.read_text(errors="replace")
        missing = [line for line in lines if line not in access]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not in the access log: {missing}\n{portal.logs()}")
        time.sleep(0.2)


def _peer_waiting(portal: Portal, *, renewal: bool, timeout: float = 60) -> dict[str, Any]:
    """The pending peer pki's first request registered, as a CA admin sees it in the API."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        peers = portal.api("GET", f"/api/v1/peers?fqdn={FQDN}&status=pending", "carol")["results"]
        if peers:
            assert len(peers) == 1, peers
            return dict(peers[0])
        time.sleep(0.3)
    raise AssertionError(f"no pending peer for {FQDN} appeared (renewal={renewal})\n{portal.logs()}")


def test_pki_est_enrolls_through_approval_and_renews(portal: Portal, tmp_path: Path) -> None:
    pki = _pki()

    # pki --estca: the CA certificate from cacerts.
    ca_out = tmp_path / "estca.pem"
    _run(
        pki,
        "--estca",
        "--url",
        portal.url,
        "--cacert",
        str(portal.tls_ca),
        "--caout",
        str(ca_out),
        "--outform",
        "pem",
        "--force",
    )
    expected_ca = x509.load_pem_x509_certificate((FIXTURES / portal.stack.ca_cert).read_bytes())
    assert x509.load_pem_x509_certificate(ca_out.read_bytes()) == expected_ca

    # simpleenroll: pki polls while the request waits for a CA admin.
    key, request = _key_and_request(pki, tmp_path, "first")
    certificate_path = tmp_path / "first.der"
    client = _est(portal, pki, request, certificate_path)
    try:
        peer = _peer_waiting(portal, renewal=False)
        assert (peer["owner"], peer["kind"], peer["status"]) == ("alice", "client", "pending")
        time.sleep(2)  # pki is polling now: 202 and Retry-After at least once more
        assert client.poll() is None, "pki --est gave up while the request was pending"
        approved = portal.api("POST", f"/api/v1/peers/{peer['id']}/approve", "carol", {})
        assert approved["status"] in ("approved", "issued")
        log = _finish(portal, client)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert "EST request pending" in log, log
    issued = x509.load_der_x509_certificate(certificate_path.read_bytes())
    assert issued.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == _public_key_of_private(pki, key)
    assert issued.subject.rfc4514_string() == f"CN={FQDN}"
    issued.verify_directly_issued_by(expected_ca)
    assert "issued certificate is trusted" in log.lower(), log
    final = portal.api("GET", f"/api/v1/peers/{peer['id']}", "alice")
    assert final["status"] == "issued"
    assert final["certificate"]["pem"].encode() == issued.public_bytes(serialization.Encoding.PEM)

    # simplereenroll: a new key, the current certificate and key given as pki does for a renewal.
    new_key, new_request = _key_and_request(pki, tmp_path, "second")
    renewed_path = tmp_path / "second.der"
    client = _est(portal, pki, new_request, renewed_path, "--cert", str(certificate_path), "--key", str(key))
    try:
        renewal = _peer_waiting(portal, renewal=True)
        assert renewal["id"] != peer["id"]
        portal.api("POST", f"/api/v1/peers/{renewal['id']}/approve", "carol", {})
        _finish(portal, client)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    renewed = x509.load_der_x509_certificate(renewed_path.read_bytes())
    assert renewed.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == _public_key_of_private(pki, new_key)
    assert renewed.serial_number != issued.serial_number
    _access_logged(
        portal,
        '"POST /.well-known/est/simpleenroll HTTP/1.1" 202',
        '"POST /.well-known/est/simpleenroll HTTP/1.1" 200',
        '"POST /.well-known/est/simplereenroll HTTP/1.1" 202',
        '"POST /.well-known/est/simplereenroll HTTP/1.1" 200',
    )
