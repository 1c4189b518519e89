"""bin/ca-portal-refresh: fetches the CRL, refuses what it must, replaces it atomically, reloads.

The case study's client bundle (real renderers) is installed with its own install.sh into a scratch
root; the refresher then runs for real (dash and bash --posix) against CRLs signed with the case
study's CA key (and impostors), served by a real HTTP server on 127.0.0.1. The same run against
the portal itself, after a real revocation, is in tests/bundles/test_refresh_live.py.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import stat
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from authority.views import crl_etag
from bundles.archive import build_zip
from bundles.renderers.bundle import finish, render_files
from bundles.renderers.engine import environment
from bundles.renderers.scripts import render_refresh, render_sync
from bundles.renderers.spec import PeerSpec, SpecRejected
from devtools.bundlecase import FIXTURES, client_peer, gateway_peer, laptop_peer, site
from tests.httpserve import closed_port_url, serve
from tests.unit.bundles.golden import assert_matches_golden

SHELLS = [
    pytest.param(cmd, id=cmd[0])
    for cmd in (["dash"], ["bash", "--posix"])
    if shutil.which(cmd[0])
] or [pytest.param(["sh"], id="sh")]  # fmt: skip
NEEDS_SHELLCHECK = pytest.mark.skipif(
    shutil.which("shellcheck") is None and os.environ.get("CA_PORTAL_REQUIRE_TOOLS") != "1",
    reason="shellcheck is not installed (CI installs it and sets CA_PORTAL_REQUIRE_TOOLS=1)",
)
PEERS: dict[str, Callable[[], PeerSpec]] = {
    "www.example.com": gateway_peer,
    "client.example.com": client_peer,
    "laptop.example.com": laptop_peer,
}
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
CA_CERT = x509.load_pem_x509_certificate((FIXTURES / "ca.crt").read_bytes())
CA_KEY = serialization.load_pem_private_key((FIXTURES / "ca.key").read_bytes(), password=None)
FQDN = "client.example.com"


# --- text ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fqdn", sorted(PEERS))
def test_the_refresher_matches_its_golden_file(fqdn: str) -> None:
    assert_matches_golden(f"casestudy/{fqdn}/ca-portal-refresh", render_refresh(environment(), site(), PEERS[fqdn]()))


def test_the_sync_script_matches_its_golden_file() -> None:
    assert_matches_golden(
        "casestudy/www.example.com/ca-portal-sync", render_sync(environment(), site(), gateway_peer())
    )


def test_only_the_gateway_has_a_sync_script() -> None:
    paths = {f.path for f in render_files(environment(), site(), client_peer())}
    assert "bin/ca-portal-refresh" in paths
    assert "bin/ca-portal-sync" not in paths
    gateway = {f.path: f.mode for f in render_files(environment(), site(), gateway_peer())}
    assert gateway["bin/ca-portal-refresh"] == gateway["bin/ca-portal-sync"] == 0o755
    with pytest.raises(ValueError, match="only the gateway"):
        render_sync(environment(), site(), client_peer())


def _scripts() -> dict[str, str]:
    return {
        "refresh": render_refresh(environment(), site(), client_peer()),
        "sync": render_sync(environment(), site(), gateway_peer()),
    }


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("name", ["refresh", "sync"])
def test_it_parses_with_sh_n(tmp_path: Path, shell: list[str], name: str) -> None:
    path = tmp_path / name
    path.write_text(_scripts()[name])
    result = subprocess.run([*shell, "-n", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@NEEDS_SHELLCHECK
@pytest.mark.parametrize("name", ["refresh", "sync"])
def test_it_passes_shellcheck(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(_scripts()[name])
    result = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_the_default_url_is_the_crl_distribution_point() -> None:
    text = render_refresh(environment(), site(), client_peer())
    assert "default_url='https://ca.example.com/crl.der'\n" in text
    other = render_refresh(environment(), site(crl_url="http://crl.example.com/vpn/ca.crl"), client_peer())
    assert "default_url='http://crl.example.com/vpn/ca.crl'\n" in other
    none = render_refresh(environment(), site(portal_url=""), client_peer())
    assert "default_url=''\n" in none


# --- CRLs ------------------------------------------------------------------------------------


def other_ca(*, same_name: bool) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = CA_CERT.subject if same_name else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Impostor CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_crl(
    number: int,
    *,
    this_update: dt.datetime | None = None,
    days: int = 30,
    revoked: tuple[int, ...] = (),
    signer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
    der: bool = False,
) -> bytes:
    issuer_cert, key = signer or (CA_CERT, CA_KEY)
    start = this_update or NOW - dt.timedelta(hours=1)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(start)
        .next_update(start + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(start).build()
        )
    crl = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM)


def crl_number(path: Path) -> int:
    crl = x509.load_pem_x509_crl(path.read_bytes())
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


# --- an installed peer -----------------------------------------------------------------------


def install_bundle(tmp_path: Path, peer: PeerSpec, crl: bytes, *extra: str) -> Path:
    """The peer's real bundle (shipping ``crl``), installed by its install.sh into tmp_path/root/etc/isakmpd."""
    files = finish(render_files(environment(), site(crl_pem=crl.decode()), peer))
    with zipfile.ZipFile(io.BytesIO(build_zip(peer.fqdn, files))) as archive:
        archive.extractall(tmp_path / "bundle")
    target = tmp_path / "root" / "etc" / "isakmpd"
    target.parent.mkdir(parents=True)
    args = ["--address", "192.0.2.10", "--schedule-with", "none", *extra, str(target)]
    result = subprocess.run(
        ["sh", str(tmp_path / "bundle" / peer.fqdn / "install.sh"), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return target


def refresh(
    target: Path, *args: str, shell: list[str] | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(shell or ["sh"]), str(target / "bin" / "ca-portal-refresh"), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        timeout=120,
    )


def crl_route(body: bytes) -> dict[str, tuple[int, dict[str, str], bytes]]:
    return {"/crl.der": (200, {"Content-Type": "application/pkix-crl"}, body)}


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    return install_bundle(tmp_path, client_peer(), make_crl(5))


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mode, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_install_sh_installs_the_refresher(installed: Path) -> None:
    script = installed / "bin" / "ca-portal-refresh"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert stat.S_IMODE((installed / "bin").stat().st_mode) == 0o755
    assert crl_number(installed / "crls" / "ca.crl") == 5


@pytest.mark.parametrize("shell", SHELLS)
def test_it_replaces_the_crl_with_a_newer_one(installed: Path, shell: list[str]) -> None:
    newer = make_crl(6, revoked=(0x4242,))
    with serve(crl_route(make_crl(6, revoked=(0x4242,), der=True))) as server:
        result = refresh(
            installed, "--target", str(installed), "--url", f"{server.url}/crl.der", "--no-reload", shell=shell
        )

    assert result.returncode == 0, result.stderr
    installed_crl = installed / "crls" / "ca.crl"
    assert installed_crl.read_bytes() == newer  # DER in, the same CRL as PEM out (what isakmpd and iked read)
    assert stat.S_IMODE(installed_crl.stat().st_mode) == 0o644
    assert "installed CRL 0x6 for isakmpd" in result.stdout
    assert sorted(p.name for p in (installed / "crls").iterdir()) == ["ca.crl"]
    assert not [p for p in installed.parent.iterdir() if p.name.startswith(".ca.crl")]


def test_it_keeps_iked_and_strongswan_current_where_they_hold_this_peers_certificate(tmp_path: Path) -> None:
    target = install_bundle(tmp_path, client_peer(), make_crl(5), "--iked", "--swanctl")
    etc = target.parent
    assert crl_number(etc / "iked" / "crls" / "ca.crl") == crl_number(etc / "swanctl" / "x509crl" / "ca.crl") == 5

    with serve(crl_route(make_crl(9))) as server:
        result = refresh(target, "--url", f"{server.url}/crl.der", "--no-reload")  # the target from its own place

    assert result.returncode == 0, result.stderr
    for path in (target / "crls" / "ca.crl", etc / "iked" / "crls" / "ca.crl", etc / "swanctl" / "x509crl" / "ca.crl"):
        assert crl_number(path) == 9, path
    assert "for iked" in result.stdout
    assert "for strongswan" in result.stdout


def test_it_asks_with_the_portals_entity_tag_and_takes_a_304(installed: Path) -> None:
    fingerprint = CA_CERT.fingerprint(hashes.SHA256()).hex()
    wanted = {
        crl_etag(ca_fingerprint=fingerprint, number=5, der=True),
        crl_etag(ca_fingerprint=fingerprint, number=5, der=False),
    }

    def answer(headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        sent = {tag.strip() for tag in headers.get("if-none-match", "").split(",")}
        return (304, {}, b"") if sent == wanted else (200, {}, make_crl(5))

    before = snapshot(installed)
    with serve({"/crl.der": answer}) as server:
        result = refresh(installed, "--url", f"{server.url}/crl.der")

    assert result.returncode == 0, result.stderr
    assert "is current" in result.stdout
    assert snapshot(installed) == before


def test_the_same_crl_again_changes_nothing(installed: Path) -> None:
    before = snapshot(installed)
    with serve(crl_route(make_crl(5))) as server:
        result = refresh(installed, "--url", f"{server.url}/crl.der", "--quiet")

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # --quiet
    assert snapshot(installed) == before


REFUSALS: dict[str, tuple[Callable[[], bytes | None], str]] = {
    "another CA of the same name": (lambda: make_crl(6, signer=other_ca(same_name=True)), "bad signature"),
    "another CA": (lambda: make_crl(6, signer=other_ca(same_name=False)), "bad signature"),
    "an older number": (lambda: make_crl(4), "older number"),
    "an expired CRL": (lambda: make_crl(7, this_update=NOW - dt.timedelta(days=40)), "expired"),
    "a CRL from the future": (lambda: make_crl(7, this_update=NOW + dt.timedelta(days=2)), "not yet valid"),
    "not a CRL": (lambda: b"<html>captive portal</html>\n", "not a CRL"),
    "a 404": (lambda: None, "HTTP 404"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_it_refuses_and_leaves_the_old_crl(installed: Path, case: str) -> None:
    body, reason = REFUSALS[case]
    content = body()
    routes = crl_route(content) if content is not None else {}
    before = snapshot(installed.parent)
    with serve(routes) as server:
        result = refresh(installed, "--url", f"{server.url}/crl.der")

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr  # one clear line
    assert reason in result.stderr
    assert snapshot(installed.parent) == before


def test_an_unreachable_portal_is_refused_and_leaves_the_old_crl(installed: Path) -> None:
    before = snapshot(installed.parent)
    result = refresh(installed, "--url", f"{closed_port_url()}/crl.der")

    assert result.returncode == 1
    assert result.stderr.startswith("ca-portal-refresh: unreachable: could not fetch")
    assert result.stderr.count("\n") == 1
    assert snapshot(installed.parent) == before


def _bin_without(tmp_path: Path, tool: str) -> str:
    """A PATH with every usual tool but ``tool`` (like a BSD without curl)."""
    bindir = tmp_path / f"no-{tool}"
    bindir.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        if not Path(directory).is_dir():
            continue
        for entry in Path(directory).iterdir():
            if entry.name != tool and not os.path.lexists(bindir / entry.name):
                (bindir / entry.name).symlink_to(entry)
    return str(bindir)


def test_it_fetches_with_wget_where_there_is_no_curl(installed: Path, tmp_path: Path) -> None:
    if shutil.which("wget") is None:
        pytest.skip("wget is not installed")
    env = {**os.environ, "PATH": _bin_without(tmp_path, "curl")}
    with serve(crl_route(make_crl(8))) as server:
        result = refresh(installed, "--url", f"{server.url}/crl.der", "--no-reload", env=env)
        unreachable = refresh(installed, "--url", f"{closed_port_url()}/crl.der", env=env)

    assert result.returncode == 0, result.stderr
    assert crl_number(installed / "crls" / "ca.crl") == 8
    assert "If-None-Match" not in str(server.requests)
    assert unreachable.returncode == 1
    assert "unreachable" in unreachable.stderr


def test_a_crl_that_revokes_this_peer_is_still_installed(installed: Path) -> None:
    own = x509.load_pem_x509_certificate((FIXTURES / f"{FQDN}.crt").read_bytes()).serial_number
    with serve(crl_route(make_crl(6, revoked=(own,)))) as server:
        result = refresh(installed, "--url", f"{server.url}/crl.der", "--no-reload")

    assert result.returncode == 0, result.stderr
    assert f"revokes {FQDN} itself" in result.stderr
    assert crl_number(installed / "crls" / "ca.crl") == 6


def _stubs(tmp_path: Path, running: tuple[str, ...]) -> tuple[dict[str, str], Path]:
    """pgrep, pkill, ikectl and swanctl that only record how they were called."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    log = tmp_path / "calls"
    pattern = "|".join(running) or "nothing-runs"
    scripts = {
        "pgrep": f'#!/bin/sh\necho "pgrep $*" >> {log}\ncase $2 in {pattern}) exit 0 ;; esac\nexit 1\n',
        "pkill": f'#!/bin/sh\necho "pkill $*" >> {log}\n',
        "ikectl": f'#!/bin/sh\necho "ikectl $*" >> {log}\n',
        "swanctl": f'#!/bin/sh\necho "SWANCTL_DIR=$SWANCTL_DIR swanctl $*" >> {log}\n',
    }
    for name, text in scripts.items():
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    return {**os.environ, "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}"}, log


def test_it_reloads_each_running_daemon_the_way_it_rereads_a_crl(tmp_path: Path) -> None:
    target = install_bundle(tmp_path, client_peer(), make_crl(5), "--iked", "--swanctl")
    env, log = _stubs(tmp_path, ("isakmpd", "iked", "charon-systemd"))
    with serve(crl_route(make_crl(6))) as server:
        result = refresh(target, "--url", f"{server.url}/crl.der", env=env)

    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert "pkill -HUP -x isakmpd" in calls
    assert "ikectl reload" in calls
    assert f"SWANCTL_DIR={target.parent}/swanctl swanctl --load-creds --noprompt" in calls


def test_no_reload_and_daemons_that_do_not_run(installed: Path, tmp_path: Path) -> None:
    env, log = _stubs(tmp_path, ())
    with serve(crl_route(make_crl(6))) as server:
        result = refresh(installed, "--url", f"{server.url}/crl.der", env=env)

    assert result.returncode == 0, result.stderr
    assert "isakmpd is not running" in result.stdout
    assert "pkill" not in log.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "ftp://example.com/crl"], "must start with http"),
        (["--url", "http://x/$(touch PWNED)"], "does not belong in a URL"),
        (["--target", "relative"], "absolute path"),
        (["--target", "/tmp/a b"], "absolute path"),
        (["--bogus"], "unknown argument"),
    ],
)
def test_it_refuses_bad_arguments(installed: Path, args: list[str], message: str) -> None:
    result = refresh(installed, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (installed / "PWNED").exists()


def test_without_an_installed_certificate_it_says_where_it_looked(tmp_path: Path) -> None:
    path = tmp_path / "ca-portal-refresh"
    path.write_text(render_refresh(environment(), site(), client_peer()))
    result = subprocess.run(
        ["sh", str(path), "--target", str(tmp_path / "etc" / "isakmpd")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "no installed certificate of client.example.com" in result.stderr


@pytest.mark.parametrize(
    "url",
    ["https://ca.example.org'; touch PWNED; '", "https://ca.example.org/$(id)", "https://ca example.org",
     "https://ca.example.org/\nrm -rf /", "javascript:alert(1)", "https://ca.example.org/`id`", "ftp://ca.example.org",
     "https://ca.example.org/crl?x=1", "https://user:pw@ca.example.org", "-K /etc/passwd", "https://"],
)  # fmt: skip
def test_a_url_that_could_break_a_script_never_reaches_one(url: str) -> None:
    with pytest.raises(SpecRejected):
        site(portal_url=url)
    with pytest.raises(SpecRejected):
        site(crl_url=url)


@pytest.mark.parametrize(
    "url",
    [
        "https://ca.example.org",
        "http://127.0.0.1:8000",
        "https://[2001:db8::1]:8443/vpn-ca",
        "http://crl.example.org/x/ca.crl",
    ],
)
def test_plain_urls_are_taken(url: str) -> None:
    assert site(portal_url=url, crl_url=url).crl_distribution_point == url


@pytest.mark.parametrize(("hours", "minutes"), [(0, 5), (25, 5), (6, 0), (6, 61)])
def test_intervals_out_of_range_are_refused(hours: int, minutes: int) -> None:
    with pytest.raises(SpecRejected):
        site(refresh_hours=hours, sync_minutes=minutes)
