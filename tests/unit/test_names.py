"""names.validate_fqdn: the one allow-list every generated config format relies on (docs/security.md T1)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pki.errors import NameRejected
from pki.names import MAX_FQDN_LENGTH, validate_fqdn

# docs/formats.md §8: the FQDN pattern that is safe in every format the portal writes.
SAFE_FQDN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def _fqdn_of_length(length: int) -> str:
    """A valid FQDN of exactly ``length`` characters: 60-character labels, then a short tail."""
    labels = []
    remaining = length
    while remaining > 64:
        labels.append("a" * 60)
        remaining -= 61
    labels.append("b" * (remaining - 4))
    labels.append("com")
    name = ".".join(labels)
    assert len(name) == length
    return name


@pytest.mark.parametrize(
    "fqdn",
    [
        "client.example.com",
        "a.b",
        "vpn-gw-01.branch3.example.org",
        "1.example.com",
        "xn--bcher-kva.example",
        "x" * 63 + ".example.com",
        "a1.b2.c3.example.net",
    ],
)
def test_it_accepts_normal_fqdns(fqdn: str) -> None:
    assert validate_fqdn(fqdn) == fqdn


def test_it_accepts_the_127_byte_maximum() -> None:
    fqdn = _fqdn_of_length(MAX_FQDN_LENGTH)
    assert MAX_FQDN_LENGTH == 127
    assert validate_fqdn(fqdn) == fqdn


def test_it_refuses_128_bytes() -> None:
    with pytest.raises(NameRejected, match="128 characters long; the maximum is 127"):
        validate_fqdn(_fqdn_of_length(128))


@pytest.mark.parametrize(
    ("fqdn", "message"),
    [
        ("", "empty"),
        ("client.example.com\n", r"'\\n'"),
        ("peer\n[Phase 1]\n0.0.0.0=evil", r"'\\n'"),
        ("client.example.com\r", r"'\\r'"),
        ('x".example.com', r"'\"'"),
        ("a,b.example.com", "','"),
        ("a b.example.com", "' '"),
        ("a#b.example.com", "'#'"),
        ("host\\.example.com", r"'\\\\'"),
        ("a=b.example.com", "'='"),
        ("a[b].example.com", r"'\[', '\]'"),
        ("host.example.com\x00", r"'\\x00'"),
        ("a_b.example.com", "'_'"),
        ("bücher.example", "non-ASCII"),
        ("client.example.com\u2028", "non-ASCII"),
        ("client.example.com\u0085", "non-ASCII"),
        ("Client.Example.com", "lower case"),
        ("client.example.com.", "must not end with a dot"),
        ("localhost", "at least two labels"),
        ("client..example.com", "empty label"),
        (".client.example.com", "empty label"),
        ("a" * 64 + ".example.com", "is 64 characters long; the maximum is 63"),
        ("-client.example.com", "'-client' must not start or end with a hyphen"),
        ("client-.example.com", "'client-' must not start or end with a hyphen"),
        ("client.example.-com", "'-com' must not start or end with a hyphen"),
        ("client.example.123", "all digits"),
        ("10.0.0.1", "all digits"),
    ],
)
def test_it_refuses_with_a_specific_reason(fqdn: str, message: str) -> None:
    with pytest.raises(NameRejected, match=message):
        validate_fqdn(fqdn)


def test_it_refuses_a_name_longer_than_127_even_with_short_labels() -> None:
    with pytest.raises(NameRejected, match="the maximum is 127"):
        validate_fqdn(".".join(["ab"] * 50) + ".com")


def test_it_refuses_non_strings() -> None:
    with pytest.raises(NameRejected, match="empty"):
        validate_fqdn(None)  # type: ignore[arg-type]


def _assert_safe_or_rejected(value: str) -> None:
    try:
        result = validate_fqdn(value)
    except NameRejected as exc:
        refusal: NameRejected | None = exc
    else:
        refusal = None
    if refusal is not None:
        assert str(refusal)  # every refusal says why
        return
    assert result == value
    assert SAFE_FQDN.fullmatch(result)
    assert len(result.encode("utf-8")) <= MAX_FQDN_LENGTH
    assert result == result.lower()
    assert not result.split(".")[-1].isdigit()


# Characters that break at least one config format (docs/security.md T1), plus the LDH alphabet so that
# the generator also produces names that pass.
_HOSTILE = "abcXYZ019-.\r\n\x00\u2028\u0085[]\"\\#=,:;{}$ \t'/ü"


@settings(max_examples=300)
@given(st.one_of(st.text(), st.text(alphabet=_HOSTILE, max_size=140)))
def test_it_returns_only_names_that_match_the_safe_pattern(value: str) -> None:
    _assert_safe_or_rejected(value)


_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True)


@settings(max_examples=200)
@given(st.lists(_LABEL, min_size=2, max_size=4))
def test_it_accepts_every_lower_case_ldh_name_within_the_limits(labels: list[str]) -> None:
    fqdn = ".".join(labels)
    if len(fqdn) > MAX_FQDN_LENGTH or labels[-1].isdigit():
        with pytest.raises(NameRejected):
            validate_fqdn(fqdn)
    else:
        assert validate_fqdn(fqdn) == fqdn
