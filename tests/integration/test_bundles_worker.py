"""Bundles are made by the render worker on its own (docs/architecture.md "Shape"), with no call to the render service.

A real deployment, on the embedded default (SQLite + filesystem broker) and on PostgreSQL + Redis:
gunicorn serves the API, one Celery worker consumes the signer and render queues, and no beat runs,
so the only thing that wakes the bundles sweeper is the worker itself (``authority.signals.certificates_issued``,
which the bundles app subscribes to) or a site-profile change (``bundles.services.profile_update`` on commit).

The gateway www.example.com and alice's client.example.com are registered and approved through
the API; the test then polls ``GET /api/v1/peers/{id}/bundle`` until the zips appear, checks that the
KeyNote policy's licensee is the CA certificate of ``GET /api/v1/ca``, that the gateway's policy
names the client, and that a site-profile change yields a new version of the client's bundle. Last,
a client whose stored networks no file can carry is left out of the gateway's files, which still
name the client issued after it, and its own bundle answers 409 with the reason.
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devtools.stack import BIN, FIXTURES, ROOT, Stack, free_port, stop_group, wait_healthy

pytestmark = pytest.mark.integration

GATEWAY = "www.example.com"
CLIENT = "client.example.com"
BAD = "bad.example.com"
LAPTOP = "laptop.example.com"
CLIENT_CSR = (FIXTURES / "client-rsa2048.csr").read_text()  # CN=client.example.com
ANY_CSR = (FIXTURES / "client-nocn.csr").read_text()  # no CN: fits any FQDN
BUNDLE_TIMEOUT = 30.0

USERS_SCRIPT = """
import json
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token
admins = Group.objects.get(name="ca-admin")
tokens = {}
for name, admin in (("alice", False), ("carol", True), ("dave", True)):
    user = User.objects.create_user(name, name + "@example.org", "correct horse battery staple")
    if admin:
        user.groups.add(admins)
    tokens[name] = Token.objects.create(user=user).key
print(json.dumps(tokens))
"""

BAD_ROW_SCRIPT = """
from enrollment.models import Peer
assert Peer.objects.filter(pk={id}).update(networks=["::/0"]) == 1
"""

PROFILE_SCRIPT = """
from django.contrib.auth.models import User
from bundles.services import profile_update
profile = profile_update(actor=User.objects.get(username="carol"), client_ext_if="vio0")
print(profile.generation)
"""


# --- the deployment: the stack's worker and a gunicorn in front of the same database -----------


@dataclass
class Site:
    stack: Stack
    url: str
    tokens: dict[str, str]
    web_log: Path

    def api(self, method: str, path: str, user: str, body: dict[str, Any] | None = None) -> tuple[int, Any, bytes]:
        """One API call as ``user`` (token auth): status, headers, body bytes."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 (loopback only)
            f"{self.url}{path}", data=data, method=method, headers={"Authorization": f"Token {self.tokens[user]}"}
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def json(self, method: str, path: str, user: str, body: dict[str, Any] | None = None) -> Any:
        status, _, data = self.api(method, path, user, body)
        assert status in (200, 201), f"{method} {path} as {user}: {status} {data[:500]!r}"
        return json.loads(data)

    def logs(self) -> str:
        worker = self.stack.worker_log.read_text(errors="replace")[-4000:] if self.stack.worker_log.exists() else ""
        web = self.web_log.read_text(errors="replace")[-2000:] if self.web_log.exists() else ""
        return f"--- worker log tail ---\n{worker}\n--- gunicorn log tail ---\n{web}"


@pytest.fixture(params=["embedded", "services"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    stack = Stack(tmp_path, request.param, db_prefix="ca_portal_it_bundles")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    stack.env["SITE_URL"] = url
    web_log = tmp_path / "gunicorn.log"
    web: subprocess.Popen[bytes] | None = None
    try:
        stack.setup()
        tokens = json.loads(stack.manage("shell", "-c", USERS_SCRIPT).stdout.strip().splitlines()[-1])
        # No beat (-B): the periodic sweeper must not be what makes the bundles here.
        stack.start_worker(concurrency=2)
        with web_log.open("wb") as sink:
            web = subprocess.Popen(
                [str(BIN / "gunicorn"), "ca_portal.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
                env=stack.env,  # the stack's environment holds no CA key passphrase path: the web tier never signs
                cwd=ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_healthy(url, web, web_log)
        yield Site(stack=stack, url=url, tokens=tokens, web_log=web_log)
    finally:
        stop_group(web)
        stack.teardown()


# --- bundles as the API hands them out -------------------------------------------------------


@dataclass
class Download:
    version: int
    files: dict[str, str]  # path under <fqdn>/ -> text


def unzip(data: bytes, fqdn: str) -> dict[str, str]:
    archive = zipfile.ZipFile(io.BytesIO(data))
    files = {}
    for info in archive.infolist():
        assert info.filename.startswith(f"{fqdn}/"), info.filename
        if not info.is_dir():
            files[info.filename[len(fqdn) + 1 :]] = archive.read(info).decode("utf-8")
    return files


def wait_for_bundle(
    site: Site, peer_id: int, fqdn: str, user: str, until: Callable[[Download], bool] = lambda d: True
) -> Download:
    """Poll GET /api/v1/peers/{id}/bundle (409 while it is not made) until ``until`` holds."""
    deadline = time.monotonic() + BUNDLE_TIMEOUT
    last = ""
    while True:
        status, headers, data = site.api("GET", f"/api/v1/peers/{peer_id}/bundle", user)
        if status == 200:
            assert headers["Content-Type"] == "application/zip"
            assert headers["Content-Disposition"] == f'attachment; filename="{fqdn}.zip"'
            download = Download(int(headers["X-Bundle-Version"]), unzip(data, fqdn))
            if until(download):
                return download
            last = f"version {download.version} does not fit yet"
        else:
            assert status == 409, f"{status} {data[:300]!r}"
            last = data.decode(errors="replace")[:300]
        if time.monotonic() > deadline:
            raise AssertionError(f"no fitting bundle for {fqdn} within {BUNDLE_TIMEOUT:.0f} s: {last}\n{site.logs()}")
        time.sleep(0.3)


def wait_issued(site: Site, peer_id: int, user: str) -> dict[str, Any]:
    deadline = time.monotonic() + BUNDLE_TIMEOUT
    while True:
        peer = site.json("GET", f"/api/v1/peers/{peer_id}", user)
        if peer["status"] == "issued":
            return dict(peer)
        assert peer["status"] in ("pending", "approved"), peer
        if time.monotonic() > deadline:
            raise AssertionError(f"peer {peer_id} not issued: {peer}\n{site.logs()}")
        time.sleep(0.3)


def licensee_b64(policy: str) -> str:
    """The x509-base64 licensee of a KeyNote policy, its continuation lines joined."""
    match = re.search(r'Licensees: "x509-base64:\\\n(.*?)"', policy, re.S)
    assert match, policy
    return "".join(piece.strip().rstrip("\\") for piece in match.group(1).splitlines())


def remote_ids(policy: str) -> list[str]:
    return re.findall(r'remote_id == "([^"]+)"', policy)


# --- the test --------------------------------------------------------------------------------


def test_the_render_worker_makes_and_remakes_bundles_by_itself(site: Site) -> None:
    # The gateway, registered by one CA admin and approved by another; alice's roaming client.
    gateway = site.json(
        "POST",
        "/api/v1/peers",
        "carol",
        {"fqdn": GATEWAY, "kind": "server", "address": "192.0.34.72", "networks": ["10.1.1.0/24"], "csr": ANY_CSR},
    )
    site.json("POST", f"/api/v1/peers/{gateway['id']}/approve", "dave", {})
    client = site.json("POST", "/api/v1/peers", "alice", {"fqdn": CLIENT, "kind": "client", "csr": CLIENT_CSR})
    status, _, _ = site.api("GET", f"/api/v1/peers/{client['id']}/bundle", "alice")
    assert status == 409, "a pending peer has no bundle"
    site.json("POST", f"/api/v1/peers/{client['id']}/approve", "carol", {})
    wait_issued(site, gateway["id"], "carol")
    wait_issued(site, client["id"], "alice")

    ca_pem = site.json("GET", "/api/v1/ca", "carol")["certificate"]
    ca_der_b64 = base64.b64encode(
        x509.load_pem_x509_certificate(ca_pem.encode()).public_bytes(serialization.Encoding.DER)
    ).decode()

    # The client's bundle appears without anyone asking for it to be rendered.
    first = wait_for_bundle(site, client["id"], CLIENT, "alice")
    policy = first.files["isakmpd/isakmpd.policy"]
    assert licensee_b64(policy) == ca_der_b64, "the policy must trust exactly the CA of GET /api/v1/ca"
    assert remote_ids(policy) == [GATEWAY]
    assert "192.0.34.72" in first.files["isakmpd/isakmpd.conf"]
    assert first.files["isakmpd/ca/ca.crt"].strip() == ca_pem.strip()
    assert "em0" in first.files["firewall/ipf.rules"]

    # The gateway's policy names the client once the client is issued (an admin downloads it).
    gateway_bundle = wait_for_bundle(
        site, gateway["id"], GATEWAY, "carol", until=lambda d: CLIENT in remote_ids(d.files["isakmpd/isakmpd.policy"])
    )
    assert remote_ids(gateway_bundle.files["isakmpd/isakmpd.policy"]) == [CLIENT]
    assert licensee_b64(gateway_bundle.files["isakmpd/isakmpd.policy"]) == ca_der_b64
    status, _, _ = site.api("GET", f"/api/v1/peers/{gateway['id']}/bundle", "alice")
    assert status == 404, "a roaming user never gets the gateway's bundle"

    # A site-profile change (the service, against the deployment's database) re-renders the client.
    generation = int(site.stack.manage("shell", "-c", PROFILE_SCRIPT).stdout.strip().splitlines()[-1])
    assert generation >= 2
    second = wait_for_bundle(site, client["id"], CLIENT, "alice", until=lambda d: d.version > first.version)
    assert second.version == first.version + 1
    assert "vio0" in second.files["firewall/ipf.rules"]
    assert "em0" not in second.files["firewall/ipf.rules"]
    assert licensee_b64(second.files["isakmpd/isakmpd.policy"]) == ca_der_b64

    state = site.stack.driver("status")
    assert state["by_status"] == {"issued": 2}
    assert state["problems"] == []
    assert state["audit_ok"], state["audit_problem"]

    # alice's laptop is stolen: she revokes it; the signer publishes a CRL that lists it, and the
    # gateway's bundle drops her FQDN from the policy and ships that CRL, all without a beat.
    serial = int(site.json("GET", f"/api/v1/peers/{client['id']}", "alice")["certificate"]["serial"], 16)
    revoked = site.json("POST", f"/api/v1/peers/{client['id']}/revoke", "alice", {"reason": "keyCompromise"})
    assert revoked["status"] == "revoked"
    deadline = time.monotonic() + BUNDLE_TIMEOUT
    while True:
        crl = _current_crl(site)
        if crl is not None and crl.get_revoked_certificate_by_serial_number(serial) is not None:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"no CRL lists the revoked certificate within {BUNDLE_TIMEOUT:.0f} s\n{site.logs()}")
        time.sleep(0.3)
    after = wait_for_bundle(
        site,
        gateway["id"],
        GATEWAY,
        "carol",
        until=lambda d: (
            "isakmpd/crls/ca.crl" in d.files and CLIENT not in remote_ids(d.files["isakmpd/isakmpd.policy"])
        ),
    )
    shipped = x509.load_pem_x509_crl(after.files["isakmpd/crls/ca.crl"].encode())
    assert shipped.get_revoked_certificate_by_serial_number(serial) is not None
    assert shipped.is_signature_valid(x509.load_pem_x509_certificate(ca_pem.encode()).public_key())  # type: ignore[arg-type]

    # A client whose stored networks no file can carry (a row written before registration refused
    # such values, or by a bug) does not stop the gateway: its files leave that client out and name
    # the next one, and the client's own bundle answers 409 with the reason (issue 10 F1).
    bad = site.json(
        "POST", "/api/v1/peers", "alice", {"fqdn": BAD, "kind": "client", "networks": ["10.20.0.0/24"], "csr": ANY_CSR}
    )
    site.stack.manage("shell", "-c", BAD_ROW_SCRIPT.format(id=int(bad["id"])))
    site.json("POST", f"/api/v1/peers/{bad['id']}/approve", "carol", {})
    wait_issued(site, bad["id"], "alice")
    laptop = site.json("POST", "/api/v1/peers", "alice", {"fqdn": LAPTOP, "kind": "client", "csr": ANY_CSR})
    site.json("POST", f"/api/v1/peers/{laptop['id']}/approve", "carol", {})
    wait_issued(site, laptop["id"], "alice")
    named = wait_for_bundle(
        site, gateway["id"], GATEWAY, "carol", until=lambda d: LAPTOP in remote_ids(d.files["isakmpd/isakmpd.policy"])
    )
    assert remote_ids(named.files["isakmpd/isakmpd.policy"]) == [LAPTOP]
    wait_for_bundle(site, laptop["id"], LAPTOP, "alice")
    deadline = time.monotonic() + BUNDLE_TIMEOUT
    while True:
        status, _, data = site.api("GET", f"/api/v1/peers/{bad['id']}/bundle", "alice")
        assert status == 409, f"{status} {data[:300]!r}"
        error = json.loads(data)["errors"]["__all__"][0]
        if error.startswith("Bundle could not be made: "):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{BAD} is not marked as failing in {BUNDLE_TIMEOUT:.0f} s: {error}\n{site.logs()}")
        time.sleep(0.3)
    assert "::/0" in error


def _current_crl(site: Site) -> x509.CertificateRevocationList | None:
    """GET /crl.der without credentials (it is public); None while no CRL exists (404)."""
    try:
        with urllib.request.urlopen(f"{site.url}/crl.der", timeout=5) as response:  # noqa: S310 (loopback)
            return x509.load_der_x509_crl(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
        return None
