"""deploy/ end to end: nginx with the shipped site in front of the portal, every process as its unit runs it.

This starts the deployment of docs/deploy.md on one host, each process from its unit file:
collectstatic (ca-portal-static), migrate (ca-portal-migrate), gunicorn on a socket passed the way
ca-portal-web.socket passes it, the signer, the render worker and beat, each under its unit's
environment and system-call sandbox (tests/deploy/sandbox.py: NoNewPrivileges, SystemCallFilter,
MemoryDenyWriteExecute), against PostgreSQL and Redis; nginx in front on loopback. It then checks
what a client sees: TLS 1.2/1.3 only, HSTS, the proxy headers reaching Django (it sends HSTS only
to a request it believes came over TLS), the client's address in the sign-in lockout, static
files from nginx, the body limits, tokens kept out of the access log, and certificates issued by
the sandboxed signer.

Skips without nginx, openssl or systemd-analyze unless CA_PORTAL_REQUIRE_TOOLS=1.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes.util
import grp
import http.client
import json
import os
import secrets
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devtools.stack import FIXTURES, Stack, free_port, stop_group
from tests.deploy import nginx_site
from tests.deploy.nginx_site import HOST, HSTS, make_certificate, nginx_binary, nginx_conf, nginx_user, render_site
from tests.deploy.units import DEPLOY, UNITS, Layout, Unit, env_file, tool, unavailable

pytestmark = pytest.mark.integration

REDIS_DB = 10


@pytest.fixture(scope="module")
def world_readable_dir() -> Iterator[Path]:
    yield from nginx_site.world_readable_dir()


class _Loopback(http.client.HTTPSConnection):
    """HTTPS to ca.example.org (SNI, certificate name, Host) at 127.0.0.1:port."""

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def all(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []


@dataclass
class Deployment:
    stack: Stack
    https_port: int
    http_port: int
    cert: Path
    static: Path
    beat_dir: Path
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def context(
        self, *, minimum: ssl.TLSVersion | None = None, maximum: ssl.TLSVersion | None = None
    ) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.cert))  # curl --cacert
        if minimum is not None:
            context.minimum_version = minimum
        if maximum is not None:
            context.maximum_version = maximum
        return context

    def https(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
        connection = _Loopback(HOST, self.https_port, context=self.context(), timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            connection.close()

    def alive(self) -> None:
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        assert not dead, f"died: {dead}\n" + "\n".join(
            f"--- {name} ---\n{(self.logs / f'{name}.log').read_text(errors='replace')[-3000:]}" for name in dead
        )


def _run_oneshot(layout: Layout, unit: Unit, env: dict[str, str], log: Path) -> None:
    process = layout.popen(unit, env, log)
    assert process.wait(timeout=180) == 0, log.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, world_readable_dir: Path) -> Iterator[Deployment]:
    nginx = nginx_binary()
    tool("systemd-analyze", install="systemd")  # the sandbox expands the units' system-call groups with it
    if ctypes.util.find_library("seccomp") is None:
        unavailable("libseccomp is not installed (apt-get install libseccomp2)")
    work = tmp_path_factory.mktemp("deployment")
    logs = work / "logs"
    logs.mkdir()
    stack = Stack(work, "services", redis_db=REDIS_DB, db_prefix="ca_portal_deploy")
    stack.setup()  # a database and a broker, migrated, the CA imported (key and passphrase in stack.var)
    base = world_readable_dir
    static, web_var, beat = base / "static", work / "web-var", work / "beat"
    for folder, mode in ((static, 0o755), (web_var, 0o750), (beat, 0o700)):
        folder.mkdir(mode=mode)
    layout = Layout(
        paths={
            "/etc/ca-portal/signer/ca-key-passphrase": stack.var / "ca-key-passphrase",
            "/var/lib/ca-portal-signer": stack.var,
            "/var/lib/ca-portal-beat": beat,
            "/var/lib/ca-portal": web_var,
            "/var/www/ca-portal/static": static,
        }
    )
    # /etc/ca-portal/ca-portal.env as docs/deploy.md fills it in, for this test's database and broker.
    env = {k: layout.map(v) for k, v in env_file(DEPLOY / "ca-portal.env.example").items()}
    env.update(
        DATABASE_URL=stack.env["DATABASE_URL"],
        REDIS_URL=stack.env["REDIS_URL"],
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        CA_REQUEUE_AFTER_SECONDS="5",
    )
    assert env["CA_PORTAL_STATIC_ROOT"] == str(static)
    cert, key = make_certificate(work)
    https_port, http_port = free_port(), free_port()
    deployment = Deployment(stack, https_port, http_port, cert, static, beat, logs)
    units = {
        name: Unit.read(UNITS / f"ca-portal-{name}.service")
        for name in ("static", "migrate", "web", "signer", "render", "beat")
    }
    listener = None
    try:
        _run_oneshot(layout, units["static"], env, logs / "static.log")
        _run_oneshot(layout, units["migrate"], env, logs / "migrate.log")

        # ca-portal-web.socket: systemd makes the socket and passes it; only nginx's group may connect.
        socket_unit = Unit.read(UNITS / "ca-portal-web.socket")
        socket_path = base / "web.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(socket_path))
        socket_path.chmod(int(socket_unit.sections["Socket"]["SocketMode"][0], 8))
        user = nginx_user()
        if user is not None:
            os.chown(socket_path, 0, grp.getgrnam(user).gr_gid)
        listener.listen(int(socket_unit.sections["Socket"]["Backlog"][0]))
        deployment.processes["web"] = layout.popen(units["web"], env, logs / "web.log", listen_fd=listener.fileno())
        for name in ("signer", "render", "beat"):
            deployment.processes[name] = layout.popen(units[name], env, logs / f"{name}.log")

        site = work / "site.conf"
        site.write_text(
            render_site(
                https_port=https_port,
                http_port=http_port,
                cert=cert,
                key=key,
                socket_path=socket_path,
                static=static,
                logs=logs,
            )
        )
        prefix = work / "nginx"
        prefix.mkdir()
        conf = nginx_conf(prefix, site, user=user)
        deployment.processes["nginx"] = subprocess.Popen(
            [nginx, "-p", str(prefix), "-e", str(logs / "nginx.log"), "-c", str(conf)],
            stdout=(logs / "nginx.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            deployment.alive()
            with contextlib.suppress(OSError, http.client.HTTPException):
                if deployment.https("GET", "/healthz").status == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(
                    "the portal did not answer through nginx: " + (logs / "web.log").read_text()[-3000:]
                )
            time.sleep(0.3)
        yield deployment
    finally:
        for process in deployment.processes.values():
            stop_group(process)
        if listener is not None:
            listener.close()
        stack.teardown()


def _shell(stack: Stack, code: str) -> str:
    """The last line `manage.py shell -c CODE` printed (the shell may first say what it imported)."""
    return stack.manage("shell", "-c", code).stdout.strip().splitlines()[-1]


def test_the_portal_answers_over_tls_with_hsts_from_django(deployment: Deployment) -> None:
    health = deployment.https("GET", "/healthz")
    assert health.status == 200
    assert json.loads(health.body) == {"status": "ok", "ca": True}
    # Django's SecurityMiddleware sends HSTS only when request.is_secure(): X-Forwarded-Proto got
    # through (BEHIND_TLS_PROXY=1). nginx adds none of its own to what it proxies, so there is one.
    assert health.all("Strict-Transport-Security") == [HSTS]
    assert health.all("Server") == ["nginx"], "no version"
    ca = deployment.https("GET", "/ca.pem")
    assert ca.status == 200
    assert ca.body.strip() == (FIXTURES / "ca-rsa2048.crt").read_bytes().strip()
    login = deployment.https("GET", "/login/")
    assert login.status == 200
    cookies = login.all("Set-Cookie")
    assert any(c.startswith("csrftoken=") and "Secure" in c for c in cookies), cookies
    assert login.all("Content-Security-Policy"), "the portal's own headers come through"
    deployment.alive()


def test_a_spoofed_forwarded_proto_or_address_is_replaced(deployment: Deployment) -> None:
    """A client's own X-Forwarded-* headers never reach Django: nginx replaces them."""
    answer = deployment.https(
        "POST",
        "/.well-known/est/simpleenroll",
        body=b"MIIB",
        headers={
            "Authorization": "Basic " + base64.b64encode(b"mallory:wrong password").decode(),
            "Content-Type": "application/pkcs10",
            "X-Forwarded-For": "203.0.113.9",
            "X-Forwarded-Proto": "http",
        },
    )
    assert answer.status == 401
    assert answer.all("Strict-Transport-Security") == [HSTS], "X-Forwarded-Proto: http from the client was replaced"
    out = _shell(
        deployment.stack, "from axes.models import AccessAttempt as A; print({a.ip_address for a in A.objects.all()})"
    )
    # The lockout (per user name and address) sees the client's address, not nobody (the unix
    # socket) and not what the client claimed.
    assert out == "{'127.0.0.1'}"


def test_plain_http_only_redirects(deployment: Deployment) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", deployment.http_port, timeout=10)
    try:
        connection.request("POST", "/.well-known/est/simpleenroll?x=1", body=b"x", headers={"Host": HOST})
        response = connection.getresponse()
        assert response.status == 301
        assert response.getheader("Location") == f"https://{HOST}/.well-known/est/simpleenroll?x=1"
        response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_are_accepted(deployment: Deployment, version: ssl.TLSVersion) -> None:
    context = deployment.context(minimum=version, maximum=version)
    with socket.create_connection(("127.0.0.1", deployment.https_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=HOST) as tls:
            assert tls.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_older_tls_is_refused_by_the_server(deployment: Deployment, version: ssl.TLSVersion) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # offering them is the point
        context = deployment.context(maximum=version)
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    try:
        context.set_ciphers("ALL:@SECLEVEL=0")  # let this client offer the old protocol at all
    except ssl.SSLError:
        pytest.skip("this OpenSSL cannot offer TLS 1.0/1.1 at all")
    with socket.create_connection(("127.0.0.1", deployment.https_port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError) as refused:
            context.wrap_socket(raw, server_hostname=HOST)
    if "NO_PROTOCOLS_AVAILABLE" in str(refused.value) or "UNSUPPORTED_PROTOCOL" in str(refused.value):
        pytest.skip(f"this OpenSSL will not send a {version.name} hello: {refused.value}")
    assert "PROTOCOL_VERSION" in str(refused.value).upper(), refused.value


def test_static_files_come_from_nginx(deployment: Deployment) -> None:
    answer = deployment.https("GET", "/static/css/portal.css")
    assert answer.status == 200
    assert answer.body == (deployment.static / "css" / "portal.css").read_bytes()
    assert answer.all("Strict-Transport-Security") == [HSTS]
    assert answer.all("X-Content-Type-Options") == ["nosniff"]
    assert answer.all("Cache-Control") == ["public, max-age=3600"]
    assert not answer.all("Content-Security-Policy"), "served by nginx, not by the portal (WhiteNoise)"
    assert deployment.https("POST", "/static/css/portal.css", body=b"").status == 403
    assert deployment.https("GET", "/static/").status in (403, 404), "no directory listing"


def test_bodies_over_the_portals_limit_stop_at_nginx_with_the_portals_answer(deployment: Deployment) -> None:
    limit = 64 * 1024  # DATA_UPLOAD_MAX_MEMORY_SIZE
    json_headers = {"Content-Type": "application/json"}
    at_limit = deployment.https("POST", "/api/v1/peers", body=b" " * limit, headers=json_headers)
    assert at_limit.status == 401, "a body at the limit reaches the portal (which wants credentials first)"
    assert at_limit.all("WWW-Authenticate") == ["Token"]
    over = deployment.https("POST", "/api/v1/peers", body=b" " * (limit + 1), headers=json_headers)
    assert over.status == 413
    assert over.headers.get_content_type() == "application/json"
    assert json.loads(over.body) == {"errors": {"__all__": ["the request body is too large"]}}  # core/api.py's
    est = deployment.https(
        "POST", "/.well-known/est/simpleenroll", body=b"A" * (limit + 1), headers={"Content-Type": "application/pkcs10"}
    )
    assert est.status == 413
    assert est.headers.get_content_type() == "text/plain"
    assert est.body == b"the request body is larger than 65536 bytes\n"  # enrollment/est.py's
    page = deployment.https("POST", "/login/", body=b"x" * (limit + 1))
    assert page.status == 413
    deployment.alive()


def test_the_sandboxed_signer_issues_and_the_render_worker_and_beat_run(deployment: Deployment) -> None:
    stack = deployment.stack
    stack.driver("submit", "3")
    state = stack.wait_for(lambda s: s["by_status"].get("issued", 0) == 3, timeout=90)
    assert state["problems"] == []
    assert state["audit_ok"], state["audit_problem"]
    # A render-queue task, sent as beat would send it.
    stack.manage("shell", "-c", "from core.tasks import send_by_name; send_by_name('authority.audit_check')")
    deadline = time.monotonic() + 60
    while True:
        if int(_shell(stack, "from authority.models import AuditCheck; print(AuditCheck.objects.count())")) >= 1:
            break
        assert time.monotonic() < deadline, (deployment.logs / "render.log").read_text(errors="replace")[-3000:]
        time.sleep(0.5)
    assert any(deployment.beat_dir.iterdir()), "beat keeps its schedule in its state directory"
    deployment.alive()
    web_log = (deployment.logs / "web.log").read_text(errors="replace")
    assert "Listening at: unix:" in web_log, "gunicorn took the socket it was passed"
    assert "control socket" not in web_log.lower()


def test_one_time_link_tokens_stay_out_of_the_access_log(deployment: Deployment) -> None:
    token, other = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    deployment.https("GET", f"/bundles/link/{token}/")
    deployment.https("GET", "/static/css/portal.css", headers={"Referer": f"https://{HOST}/bundles/link/{other}/"})
    log = (deployment.logs / "ca-portal.access.log").read_text()
    assert token not in log
    assert other not in log
    assert '"GET /bundles/link/-/ HTTP/1.1"' in log
    assert '"GET /static/css/portal.css HTTP/1.1" 200' in log
