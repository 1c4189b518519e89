"""isakmpd.policy: golden files, and the KeyNote assertion read back as libkeynote reads it."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bundles.renderers import engine
from bundles.renderers.isakmpd import render_isakmpd_policy
from bundles.renderers.readers.keynote import Assertion, Token, read_policy, split_assertions
from bundles.renderers.spec import SUITES, PeerSpec, Site, Suite
from devtools.bundlecase import client_peer, gateway_peer, laptop_peer, site
from tests.unit.bundles.golden import assert_matches_golden

ENV = engine.environment()
SITE = site()
FIELDS = ["KeyNote-Version", "Comment", "Authorizer", "Licensees", "Conditions"]


def assertion_of(site_: Site, peer: PeerSpec) -> tuple[str, Assertion]:
    text = render_isakmpd_policy(ENV, site_, peer)
    policy = read_policy(text)
    assert policy.errors == []
    assert len(policy.assertions) == 1
    assertion = policy.assertions[0]
    assert assertion.lex_errors == []
    return text, assertion


def S(value: str) -> Token:
    return Token("STRING", value)


def V(name: str) -> Token:
    return Token("VARIABLE", name)


def op(text: str) -> Token:
    return Token(text, text)


def eq(name: str, value: str) -> list[Token]:
    return [V(name), op("=="), S(value)]


def expected_conditions(suite: Suite, remote: list[Token]) -> list[Token]:
    """``app_domain == "IPsec policy" && ... && <remote> -> "true";`` as tokens."""
    tests = [
        eq("app_domain", "IPsec policy"),
        eq("doi", "ipsec"),
        eq("esp_present", "yes"),
        eq("esp_enc_alg", suite.keynote_enc),
        eq("esp_auth_alg", suite.keynote_auth),
        *([eq("pfs", "yes")] if suite.pfs else []),
        eq("remote_id_type", "FQDN"),
        *([remote] if remote else []),
    ]
    tokens: list[Token] = []
    for index, test in enumerate(tests):
        if index:
            tokens.append(op("&&"))
        tokens.extend(test)
    return [*tokens, op("->"), S("true"), op(";")]


def any_of(fqdns: tuple[str, ...]) -> list[Token]:
    tokens = [op("(")]
    for index, fqdn in enumerate(fqdns):
        if index:
            tokens.append(op("||"))
        tokens.extend(eq("remote_id", fqdn))
    return [*tokens, op(")")]


@pytest.mark.parametrize("peer", [gateway_peer(), client_peer(), laptop_peer()], ids=lambda p: p.fqdn)
def test_it_matches_the_golden_file(peer: PeerSpec) -> None:
    assert_matches_golden(f"casestudy/{peer.fqdn}/isakmpd.policy", render_isakmpd_policy(ENV, SITE, peer))


@pytest.mark.parametrize("peer", [gateway_peer(), client_peer(), laptop_peer()], ids=lambda p: p.fqdn)
def test_it_reads_back_as_one_assertion_with_exactly_the_expected_fields(peer: PeerSpec) -> None:
    text, assertion = assertion_of(SITE, peer)
    assert list(assertion.fields) == FIELDS
    assert [f.written for f in assertion.fields.values()] == FIELDS
    assert assertion.comments == []
    assert assertion.tokens("Authorizer") == [S("POLICY")]
    assert assertion.tokens("KeyNote-Version") == [S("2")]
    # LF only, no empty or blank line inside, one trailing newline, continuation lines indented.
    assert "\r" not in text
    assert text.endswith('";\n')
    lines = text[:-1].split("\n")
    assert all(line.strip() for line in lines)
    assert lines[0] == "KeyNote-Version: 2"
    assert split_assertions(text) == [text]


@pytest.mark.parametrize("peer", [gateway_peer(), client_peer(), laptop_peer()], ids=lambda p: p.fqdn)
def test_it_names_the_ca_certificate_as_the_only_licensee(peer: PeerSpec) -> None:
    _, assertion = assertion_of(SITE, peer)
    tokens = assertion.tokens("Licensees")
    assert len(tokens) == 1
    assert tokens[0].kind == "STRING"
    prefix, _, encoded = tokens[0].value.partition(":")
    assert prefix == "x509-base64"
    ca = x509.load_pem_x509_certificate(SITE.ca_cert_pem.encode())
    assert base64.b64decode(encoded, validate=True) == ca.public_bytes(serialization.Encoding.DER)
    # Wrapped as isakmpd.policy(5) shows: a backslash ends each piece, the next line starts with TABs.
    licensee_lines = assertion.fields["Licensees"].text.split("\n")
    assert licensee_lines[0] == ' "x509-base64:\\'
    assert all(line.startswith("\t\t") for line in licensee_lines[1:])
    assert all(line.endswith("\\") for line in licensee_lines[:-1])


def test_it_pins_the_issued_clients_on_the_gateway() -> None:
    _, assertion = assertion_of(SITE, gateway_peer())
    expected = expected_conditions(SITE.suite, any_of(("client.example.com", "laptop.example.com")))
    assert assertion.tokens("Conditions") == expected
    assert all(line.startswith("\t") for line in assertion.fields["Conditions"].text.split("\n")[1:])


@pytest.mark.parametrize("peer", [client_peer(), laptop_peer()], ids=lambda p: p.fqdn)
def test_it_pins_the_gateway_on_a_client(peer: PeerSpec) -> None:
    _, assertion = assertion_of(SITE, peer)
    assert assertion.tokens("Conditions") == expected_conditions(SITE.suite, eq("remote_id", "www.example.com"))


def test_it_accepts_one_issued_client_with_the_same_shape() -> None:
    _, assertion = assertion_of(dataclasses.replace(SITE, issued_clients=("laptop.example.com",)), gateway_peer())
    assert assertion.tokens("Conditions") == expected_conditions(SITE.suite, any_of(("laptop.example.com",)))


def test_it_accepts_nobody_on_the_gateway_before_any_client_is_issued() -> None:
    text, assertion = assertion_of(dataclasses.replace(SITE, issued_clients=()), gateway_peer())
    assert assertion.tokens("Conditions") == expected_conditions(SITE.suite, [Token("FALSE", "false")])
    assert "\t# No client certificate has been issued yet" in text


@pytest.mark.parametrize("peer", [gateway_peer(), client_peer(), laptop_peer()], ids=lambda p: p.fqdn)
def test_it_leaves_out_the_remote_id_check_when_the_site_turns_it_off(peer: PeerSpec) -> None:
    _, assertion = assertion_of(dataclasses.replace(SITE, remote_id_check=False), peer)
    assert assertion.tokens("Conditions") == expected_conditions(SITE.suite, [])


@pytest.mark.parametrize("key", list(SUITES))
def test_it_requires_the_suites_esp_algorithms(key: str) -> None:
    site_ = dataclasses.replace(SITE, suite=SUITES[key])
    _, assertion = assertion_of(site_, gateway_peer())
    expected = expected_conditions(SUITES[key], any_of(SITE.issued_clients))
    assert assertion.tokens("Conditions") == expected


def test_it_does_not_require_pfs_from_a_suite_without_it() -> None:
    suite = dataclasses.replace(SUITES["aes256-sha256-modp2048"], pfs=False)
    _, assertion = assertion_of(dataclasses.replace(SITE, suite=suite), client_peer())
    tokens = assertion.tokens("Conditions")
    assert V("pfs") not in tokens
    assert tokens == expected_conditions(suite, eq("remote_id", "www.example.com"))


def test_it_puts_the_legacy_warning_first_in_the_comment_field() -> None:
    # A '#' line before KeyNote-Version would make libkeynote reject the whole assertion, so the
    # warning lives in the Comment field, right after the version.
    site_ = dataclasses.replace(SITE, suite=SUITES["legacy-3des-sha1-modp1024"])
    text, assertion = assertion_of(site_, gateway_peer())
    assert text.split("\n")[1].startswith("Comment: WARNING: legacy algorithms (3DES, SHA-1, MODP 1024)")
    assert assertion.comments == []
    assert eq("esp_enc_alg", "3des")[2] in assertion.tokens("Conditions")


def test_it_mentions_the_generator_and_the_ca_in_the_comment() -> None:
    _, assertion = assertion_of(SITE, client_peer())
    comment = assertion.fields["Comment"].text
    assert "ca_portal" in comment
    assert '"EuroBSDcon CA"' in comment
