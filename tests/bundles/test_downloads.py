"""Downloads, the portal-made key's single delivery, and one-time links (T22, T24, T25)."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.db import connection
from django.utils import timezone

from authority.models import AuditEvent
from bundles import services
from bundles.models import BundleDownload, DownloadLink
from bundles.services import downloads
from enrollment.models import Peer, PortalKey
from tests.bundles.conftest import issue, render

pytestmark = pytest.mark.django_db


def _zip(data: bytes) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(data))


def test_the_owner_downloads_the_zip_and_it_is_audited(client_peer: Peer, owner: Any) -> None:
    bundle = render(client_peer)

    download = services.bundle_download(peer_id=client_peer.pk, user=owner, address="198.51.100.7", via="page")

    assert download.filename == "client.example.com.zip"
    assert download.sha256 == hashlib.sha256(download.data).hexdigest() == bundle.sha256
    archive = _zip(download.data)
    names = archive.namelist()
    assert all(n.startswith("client.example.com/") for n in names)
    assert "client.example.com/SHA256SUMS" in names
    assert "client.example.com/isakmpd/private/local.key" not in names
    for info in archive.infolist():
        if not info.is_dir():
            expected = {"install.sh": 0o755, "ca-portal-refresh": 0o755}.get(info.filename.rsplit("/", 1)[-1])
            mode = (info.external_attr >> 16) & 0o777
            assert mode == expected or mode in (0o600, 0o644)
    row = BundleDownload.objects.get()
    assert (row.user, row.address, row.sha256, row.with_key) == (owner, "198.51.100.7", download.sha256, False)
    event = AuditEvent.objects.get(action="bundle.downloaded")
    assert event.data["sha256"] == download.sha256
    assert event.data["address"] == "198.51.100.7"
    assert event.actor == owner.get_username()


@pytest.mark.parametrize("persona", ["other_user", "admin", "auditor"])
def test_only_the_owner_downloads_a_client_bundle(client_peer: Peer, persona: str, request: Any) -> None:
    render(client_peer)

    with pytest.raises(services.BundleError) as refused:
        services.bundle_download(
            peer_id=client_peer.pk, user=request.getfixturevalue(persona), address=None, via="page"
        )

    assert refused.value.status == 403
    assert not BundleDownload.objects.exists()


@pytest.mark.parametrize(("persona", "allowed"), [("admin", True), ("second_admin", True), ("auditor", False)])
def test_ca_admins_download_the_gateway_bundle(gateway: Peer, persona: str, allowed: bool, request: Any) -> None:
    render(gateway)
    user = request.getfixturevalue(persona)

    if allowed:
        names = _zip(services.bundle_download(peer_id=gateway.pk, user=user, address=None, via="page").data).namelist()
        assert "www.example.com/firewall/pf.conf" in names
        assert "www.example.com/firewall/ipf.rules" not in names
    else:
        with pytest.raises(services.BundleError):
            services.bundle_download(peer_id=gateway.pk, user=user, address=None, via="page")


def test_a_bundle_that_is_not_made_yet_is_a_409(client_peer: Peer, owner: Any) -> None:
    with pytest.raises(services.BundleError, match="not ready") as refused:
        services.bundle_download(peer_id=client_peer.pk, user=owner, address=None, via="page")

    assert refused.value.status == 409


def test_a_portal_made_key_is_delivered_once_encrypted_then_destroyed(gateway: Peer, owner: Any, admin: Any) -> None:
    laptop, passphrase = issue(owner, admin, "laptop.example.com", portal_key=True)
    render(laptop)

    first = services.bundle_download(peer_id=laptop.pk, user=owner, address=None, via="page")
    second = services.bundle_download(peer_id=laptop.pk, user=owner, address=None, via="page")

    key_pem = _zip(first.data).read("laptop.example.com/isakmpd/private/local.key")
    assert key_pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    key = serialization.load_pem_private_key(key_pem, passphrase.encode())
    cert = x509.load_pem_x509_certificate(laptop.certificate_request.certificate.pem.encode())
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    assert first.with_key
    assert not second.with_key
    assert second.key_was_delivered_before
    assert "laptop.example.com/isakmpd/private/local.key" not in _zip(second.data).namelist()
    sums = _zip(first.data).read("laptop.example.com/SHA256SUMS").decode()
    assert f"{hashlib.sha256(key_pem).hexdigest()}  isakmpd/private/local.key" in sums
    stored = PortalKey.objects.get(peer=laptop)
    assert stored.encrypted_pem == ""
    assert stored.destroyed_at is not None
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions.count("peer.key_destroyed") == 1
    # Nothing in the database still holds the key (T22).
    assert not PortalKey.objects.filter(encrypted_pem__contains="PRIVATE KEY").exists()


def test_a_withheld_key_stays_for_a_later_download(gateway: Peer, owner: Any, admin: Any) -> None:
    laptop, _ = issue(owner, admin, "laptop.example.com", portal_key=True)
    render(laptop)

    withheld = services.bundle_download(peer_id=laptop.pk, user=owner, address=None, via="api", release_key=False)
    later = services.bundle_download(peer_id=laptop.pk, user=owner, address=None, via="page")

    assert not withheld.with_key
    assert not withheld.key_was_delivered_before
    assert later.with_key


# --- one-time links (T24) ---------------------------------------------------------------------------


def test_a_link_is_stored_only_as_a_hash_and_works_once(client_peer: Peer, owner: Any) -> None:
    render(client_peer)
    token, link = services.link_create(peer_id=client_peer.pk, user=owner)

    download = services.link_redeem(token=token, address="192.0.2.1")

    assert len(token) >= 43  # 32 random bytes, base64url
    assert link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert not DownloadLink.objects.filter(token_hash__contains=token).exists()
    assert download.data.startswith(b"PK")
    with pytest.raises(services.BundleError) as again:
        services.link_redeem(token=token, address=None)
    assert again.value.status == 410
    assert BundleDownload.objects.get().via == "link"
    assert link.expires_at - link.created_at <= timedelta(minutes=10)


def test_an_expired_link_is_gone(client_peer: Peer, owner: Any) -> None:
    render(client_peer)
    token, _ = services.link_create(peer_id=client_peer.pk, user=owner, now=timezone.now() - timedelta(minutes=11))

    with pytest.raises(services.BundleError, match="expired") as refused:
        services.link_redeem(token=token, address=None)

    assert refused.value.status == 410
    assert not BundleDownload.objects.exists()


def test_the_token_alone_redeems_a_link_as_its_makers_download(client_peer: Peer, owner: Any) -> None:
    """A headless peer has no session: the token is the credential, and the download is the maker's,
    audited with the address it came from and the link it used (T24)."""
    render(client_peer)
    token, link = services.link_create(peer_id=client_peer.pk, user=owner)

    download = services.link_redeem(token=token, address="203.0.113.9")

    assert download.data.startswith(b"PK")
    row = BundleDownload.objects.get()
    assert (row.user, row.address, row.via) == (owner, "203.0.113.9", "link")
    event = AuditEvent.objects.get(action="bundle.downloaded")
    assert event.actor == owner.get_username()
    assert (event.data["address"], event.data["via"], event.data["link"]) == ("203.0.113.9", "link", link.pk)
    assert DownloadLink.objects.get().used_at is not None


def test_a_link_whose_maker_may_no_longer_take_the_bundle_gives_nothing(
    client_peer: Peer, owner: Any, other_user: Any
) -> None:
    render(client_peer)
    token, _ = services.link_create(peer_id=client_peer.pk, user=owner)
    second, _ = services.link_create(peer_id=client_peer.pk, user=owner)
    Peer.objects.filter(pk=client_peer.pk).update(owner=other_user)  # the peer changed hands

    with pytest.raises(services.BundleError) as refused:
        services.link_redeem(token=token, address=None)
    owner.is_active = False
    owner.save()
    with pytest.raises(services.BundleError) as closed:
        services.link_redeem(token=second, address=None)

    assert refused.value.status == 404
    assert refused.value.peer is None  # nothing about the peer for whoever holds the link
    assert closed.value.status == 404
    assert not BundleDownload.objects.exists()
    assert not DownloadLink.objects.filter(used_at__isnull=False).exists()


def test_a_link_carries_the_portal_made_key_only_when_its_maker_chose_so(gateway: Peer, owner: Any, admin: Any) -> None:
    laptop, passphrase = issue(owner, admin, "laptop.example.com", portal_key=True)
    render(laptop)
    without, plain_link = services.link_create(peer_id=laptop.pk, user=owner)
    with_key, key_link = services.link_create(peer_id=laptop.pk, user=owner, with_key=True)

    plain = services.link_redeem(token=without, address=None)
    assert not plain.with_key
    assert "laptop.example.com/isakmpd/private/local.key" not in _zip(plain.data).namelist()
    assert PortalKey.objects.get(peer=laptop).encrypted_pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")

    keyed = services.link_redeem(token=with_key, address=None)
    key_pem = _zip(keyed.data).read("laptop.example.com/isakmpd/private/local.key")
    assert serialization.load_pem_private_key(key_pem, passphrase.encode())
    assert keyed.with_key
    assert PortalKey.objects.get(peer=laptop).encrypted_pem == ""
    assert (plain_link.with_key, key_link.with_key) == (False, True)
    created = AuditEvent.objects.filter(action="bundle.link_created").order_by("seq")
    assert [e.data["with_key"] for e in created] == [False, True]


def test_a_link_asked_to_carry_a_key_that_is_gone_carries_none(gateway: Peer, owner: Any, admin: Any) -> None:
    laptop, _ = issue(owner, admin, "laptop.example.com", portal_key=True)
    render(laptop)
    services.bundle_download(peer_id=laptop.pk, user=owner, address=None, via="page")  # takes the key

    _, link = services.link_create(peer_id=laptop.pk, user=owner, with_key=True)

    assert link.with_key is False


def test_nobody_makes_a_link_to_a_bundle_they_may_not_download(client_peer: Peer, admin: Any) -> None:
    render(client_peer)

    with pytest.raises(services.BundleError) as refused:
        services.link_create(peer_id=client_peer.pk, user=admin)

    assert refused.value.status == 403


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_twenty_concurrent_redemptions_give_one_download(client_peer: Peer, owner: Any) -> None:
    render(client_peer)
    token, _ = services.link_create(peer_id=client_peer.pk, user=owner)
    outcomes: list[object] = []

    def redeem() -> None:
        try:
            start.wait()
            outcomes.append(services.link_redeem(token=token, address=None))
        except services.BundleError as exc:
            outcomes.append(exc)
        finally:
            connection.close()

    if connection.vendor == "postgresql":
        start = threading.Barrier(20)
        threads = [threading.Thread(target=redeem) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        # SQLite's in-memory test database cannot hold concurrent writers; the PostgreSQL pass races them.
        start = threading.Barrier(1)
        for _ in range(20):
            redeem()

    wins = [o for o in outcomes if isinstance(o, services.Download)]
    losses = [o for o in outcomes if isinstance(o, services.BundleError)]
    assert len(wins) == 1
    assert len(losses) == 19
    assert {e.status for e in losses} == {410}
    assert BundleDownload.objects.count() == 1


def test_the_sqlite_wal_is_emptied_after_a_key_leaves(
    gateway: Peer, owner: Any, admin: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The WAL keeps the frames that carried the encrypted key until a checkpoint (T38): the download
    that destroys it asks for one after commit. The browser test scans the real files."""
    laptop, _ = issue(owner, admin, "laptop.example.com", portal_key=True)
    render(laptop)

    with django_capture_on_commit_callbacks() as plain:
        services.bundle_download(peer_id=laptop.pk, user=owner, address=None, via="api", release_key=False)
    with django_capture_on_commit_callbacks() as keyed:
        services.bundle_download(peer_id=laptop.pk, user=owner, address=None, via="page")

    assert downloads.wal_checkpoint not in plain
    assert downloads.wal_checkpoint in keyed
    downloads.wal_checkpoint()  # harmless on the in-memory test database (and on PostgreSQL: nothing)
