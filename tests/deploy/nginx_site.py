"""deploy/nginx/ca-portal.conf for a test: the site with this test's names, a top-level nginx.conf, a certificate."""

from __future__ import annotations

import grp
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.deploy.units import DEPLOY, tool

SITE = DEPLOY / "nginx" / "ca-portal.conf"
HOST = "ca.example.org"
HSTS = "max-age=31536000; includeSubDomains"


def nginx_binary() -> str:
    return tool("nginx", "/usr/sbin/nginx", install="nginx")


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def render_site(
    *, https_port: int, http_port: int, cert: Path, key: Path, socket_path: Path, static: Path, logs: Path
) -> str:
    """The checked-in site with its production names swapped for this test's; each swap must apply."""
    text = SITE.read_text()
    v6 = _ipv6_loopback()
    swaps = [
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen [::]:80;", f"listen [::1]:{http_port};" if v6 else ""),
        ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
        ("listen [::]:443 ssl;", f"listen [::1]:{https_port} ssl;" if v6 else ""),
        ("/etc/ssl/ca-portal/fullchain.pem", str(cert)),
        ("/etc/ssl/ca-portal/privkey.pem", str(key)),
        ("unix:/run/ca-portal/web.sock", f"unix:{socket_path}"),
        ("alias /var/www/ca-portal/static/;", f"alias {static}/;"),
        ("/var/log/nginx/", f"{logs}/"),
    ]
    for old, new in swaps:
        assert old in text, f"the site file no longer says {old!r}; update this test"
        text = text.replace(old, new)
    return text


def nginx_conf(prefix: Path, site: Path, *, user: str | None) -> Path:
    """A top-level nginx.conf around the site, everything nginx writes kept under ``prefix``."""
    mime = Path("/etc/nginx/mime.types")
    types = f"include {mime};" if mime.exists() else "types { text/css css; application/javascript js; }"
    for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "temp" / folder).mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""{f"user {user};" if user else ""}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    {types}
    default_type application/octet-stream;
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;
    include {site};
}}
"""
    )
    return conf


def make_certificate(folder: Path) -> tuple[Path, Path]:
    openssl = tool("openssl", install="openssl")
    cert, key = folder / "tls.crt", folder / "tls.key"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}", "-days", "2",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def nginx_user() -> str | None:
    """As root, nginx's workers drop to a user (Debian's: www-data), as in production."""
    if os.geteuid() != 0:
        return None
    for name in ("www-data", "nobody"):
        try:
            grp.getgrnam(name)
            return name
        except KeyError:
            continue
    return None


def world_readable_dir() -> Iterator[Path]:
    """Where nginx's workers (another user, when the tests run as root) may look: socket, static files."""
    folder = Path(tempfile.mkdtemp(prefix="ca_portal_deploy_"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
