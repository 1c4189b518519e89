"""bundles.preview (pure): diff lines by kind, and a CRL's change in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from bundles.preview import CRL_ENTRIES_SHOWN, crl_change, crl_facts, diff_lines
from tests.conftest import fixture_bytes

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _crl(number: int, serials: list[int], *, reason: x509.ReasonFlags | None = None) -> str:
    key = serialization.load_pem_private_key(fixture_bytes("ca-rsa2048.key"), None)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")]))
        .last_update(NOW)
        .next_update(NOW + timedelta(days=30))
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for serial in serials:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW)
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.PEM).decode()


def test_diff_lines_have_their_kind() -> None:
    lines = diff_lines("a\nb\nc\n", "a\nB\nc\n--- d\n", fromfile="v1/x", tofile="v2/x")

    assert [(line.kind, line.text) for line in lines] == [
        ("file", "--- v1/x"),
        ("file", "+++ v2/x"),
        ("hunk", "@@ -1,3 +1,4 @@"),
        ("same", " a"),
        ("del", "-b"),
        ("add", "+B"),
        ("same", " c"),
        ("add", "+--- d"),  # a line of the file that looks like a header is still an added line
    ]
    assert diff_lines("same\n", "same\n", fromfile="a", tofile="b") == ()


def test_a_crl_change_says_the_numbers_and_the_entries_added_and_removed() -> None:
    before = _crl(4, [0x10, 0x11])
    after = _crl(5, [0x11, 0xABC], reason=x509.ReasonFlags.key_compromise)

    change = crl_change(before, after)

    assert change is not None
    assert (change.before.number, change.after.number) == (4, 5)
    assert (change.before.entries, change.after.entries) == (2, 2)
    assert [(e.serial, e.reason) for e in change.added] == [("abc", "keyCompromise")]
    assert [e.serial for e in change.removed] == ["10"]
    assert (change.added_count, change.removed_count) == (1, 1)
    assert change.after.next_update == NOW + timedelta(days=30)


def test_a_long_change_lists_the_first_entries_and_counts_them_all() -> None:
    change = crl_change(_crl(1, []), _crl(2, list(range(1, 80))))

    assert change is not None
    assert len(change.added) == CRL_ENTRIES_SHOWN
    assert change.added_count == 79


def test_text_that_is_no_crl_gives_no_summary() -> None:
    assert crl_change("not a crl", _crl(1, [])) is None
    assert crl_facts("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n") is None
    facts = crl_facts(_crl(7, [1, 2, 3]))
    assert facts is not None
    assert (facts.number, facts.entries) == (7, 3)
