"""The bundle page (issue 10, item 9): SHA256SUMS in the list, coloured diffs, a CRL change in words;
and the site profile page (item 13): the whole width, suites never cut off, a live count of waiting bundles."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from django.test import Client

from authority.revocation import certificate_revoke, crl_publish
from bundles import services
from bundles.models import SiteProfile
from enrollment.models import Peer
from tests.bundles.conftest import issue, render
from tests.conftest import login

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    login(client, user)
    return client


def test_sha256sums_is_in_the_file_list_with_what_the_download_holds(client_peer: Peer, owner: Any) -> None:
    bundle = render(client_peer)

    html = _client(owner).get(f"/bundles/peer/{client_peer.pk}/").content.decode()
    download = services.bundle_download(peer_id=client_peer.pk, user=owner, address=None, via="page")

    assert '<code class="path">client.example.com/SHA256SUMS</code>' in html
    for entry in bundle.files:
        digest = hashlib.sha256(entry["text"].encode()).hexdigest()
        assert f"{digest}  {entry['path']}" in html
    assert "sha256sum -c SHA256SUMS" in html
    assert download.sha256 == bundle.sha256  # the listed sums are those of the zip


def test_diff_lines_are_coloured_by_class_not_by_style(client_peer: Peer, owner: Any, admin: Any) -> None:
    render(client_peer)
    services.profile_update(actor=admin, suite="aes256-sha384-ecp384")
    render(client_peer)

    html = _client(owner).get(f"/bundles/peer/{client_peer.pk}/").content.decode()

    assert '<span class="diff-del">-Transforms=           AES-256-SHA2-256-GRP14-RSA_SIG</span>' in html
    assert '<span class="diff-add">+Transforms=           AES-256-SHA2-384-GRP20-RSA_SIG</span>' in html
    assert '<span class="diff-hunk">@@ ' in html
    assert '<span class="diff-file">--- v1/isakmpd/isakmpd.conf</span>' in html
    assert " style=" not in html


def test_a_changed_crl_is_summarised_not_shown_as_base64(client_peer: Peer, owner: Any, admin: Any) -> None:
    crl_publish()
    render(client_peer)
    lost, _ = issue(owner, admin, "lost.example.com")
    certificate = lost.certificate_request.certificate  # type: ignore[union-attr]
    certificate_revoke(certificate_id=certificate.pk, reason="keyCompromise", actor=admin)
    crl_publish(trigger="revocation")
    render(client_peer)

    html = _client(owner).get(f"/bundles/peer/{client_peer.pk}/").content.decode()

    preview = r'<details class="preview"[^>]*>\s*<summary><code class="path">isakmpd/crls/ca.crl</code>.*?</details>'
    crl = re.search(preview, html, re.S)
    assert crl is not None
    section = crl.group(0)
    assert "CRL number <strong>1 → 2</strong>" in section
    assert "1 revoked certificate (was 0)" in section
    assert f'<code class="wrap">{certificate.serial}</code> revoked' in section
    assert "(keyCompromise)" in section
    assert 'class="diff' not in section  # no diff of base64
    assert section.count("-----BEGIN X509 CRL-----") == 1  # only the whole file, below the summary


def test_the_profile_page_is_full_width_with_suites_as_choices(admin: Any) -> None:
    html = _client(admin).get("/bundles/profile/").content.decode()

    assert 'class="card wide"' not in html  # was max-width 560 px: half the page
    assert 'class="profile-form"' in html
    assert '<select name="suite"' not in html  # a drop-down cut its long labels off
    for value in ("aes256-sha256-modp2048", "aes256-sha384-ecp384", "legacy-3des-sha1-modp1024"):
        assert f'type="radio" name="suite" value="{value}"' in html
    assert re.search(r'value="aes256-sha256-modp2048" id="id_suite_0" checked>', html)


def test_a_suite_chosen_by_radio_is_saved(admin: Any) -> None:
    form = {"gateway": "", "ext_if": "em0", "int_if": "em1", "client_ext_if": "em0", "client_int_if": "em1",
            "suite": "aes128-sha256-modp3072", "remote_id_check": "on", "services": "", "admin_hosts": ""}  # fmt: skip

    assert _client(admin).post("/bundles/profile/", form).status_code == 302
    assert SiteProfile.objects.get(pk=1).suite == "aes128-sha256-modp3072"


def test_the_waiting_bundles_are_counted_live(client_peer: Peer, gateway: Peer, admin: Any, owner: Any) -> None:
    client = _client(admin)
    profile = client.get("/bundles/profile/").content.decode()
    gateway_page = client.get("/bundles/gateway/").content.decode()

    assert 'data-stale-url="/bundles/gateway/status.json"' in profile
    assert '<strong id="profile-stale-count" data-stale-count>2</strong>' in profile  # neither is rendered yet
    assert 'id="stale-count" data-stale-url="/bundles/gateway/status.json" data-stale-count>2<' in gateway_page
    assert "/static/js/stale-count.js" in profile
    assert "/static/js/stale-count.js" in gateway_page
    assert client.get("/bundles/gateway/status.json").json() == {"stale": 2}

    render(gateway)
    render(client_peer)

    answer = client.get("/bundles/gateway/status.json")
    assert answer.json() == {"stale": 0}
    assert "no-cache" in answer["Cache-Control"] or "max-age=0" in answer["Cache-Control"]
    assert _client(owner).get("/bundles/gateway/status.json").status_code == 403
    assert Client().get("/bundles/gateway/status.json").status_code == 302  # to the sign-in page
