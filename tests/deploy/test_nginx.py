"""deploy/nginx/ca-portal.conf: accepted by `nginx -t`, as checked in but for its production names.

The site file is used as checked in, with only its production names swapped for this test's (ports,
certificate, socket, static root, log directory; each swap must find its text). A throw-away TLS
certificate for ca.example.org is made with openssl. tests/deploy/test_behind_nginx.py runs it.

Skips without nginx or openssl unless CA_PORTAL_REQUIRE_TOOLS=1 (CI: apt-get install nginx).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.stack import free_port
from tests.deploy import nginx_site
from tests.deploy.nginx_site import SITE, make_certificate, nginx_binary, nginx_conf, nginx_user, render_site


@pytest.fixture(scope="module")
def world_readable_dir() -> Iterator[Path]:
    yield from nginx_site.world_readable_dir()


def test_nginx_accepts_the_site(tmp_path: Path, world_readable_dir: Path) -> None:
    nginx = nginx_binary()
    cert, key = make_certificate(tmp_path)
    site = tmp_path / "site.conf"
    site.write_text(
        render_site(
            https_port=free_port(),
            http_port=free_port(),
            cert=cert,
            key=key,
            socket_path=world_readable_dir / "web.sock",
            static=world_readable_dir / "static",
            logs=tmp_path,
        )
    )
    conf = nginx_conf(tmp_path, site, user=nginx_user())
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-e", "stderr", "-c", str(conf)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr
    assert "test is successful" in result.stderr
    assert "[warn]" not in result.stderr
    assert "[emerg]" not in result.stderr


def test_the_site_keeps_tls_to_1_2_and_1_3_and_swaps_the_proxy_headers() -> None:
    """What the end-to-end tests (test_behind_nginx.py) cannot tell apart from a client's own choices."""
    text = SITE.read_text()
    assert "    ssl_protocols TLSv1.2 TLSv1.3;\n" in text
    for header in ("X-Forwarded-Proto $scheme", "X-Forwarded-For $remote_addr", "Host $host"):
        assert f"proxy_set_header {header};" in text
    assert "client_max_body_size 64k;" in text
