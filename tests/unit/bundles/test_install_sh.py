"""install.sh: POSIX sh, checks the bundle, installs with the right modes, refuses what it must.

The scripts run for real (dash and bash --posix where present, else sh) against a bundle unpacked
into tmp_path. isakmpd.conf and friends are small stand-ins: this test is about the script.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bundles.archive import BundleFile, build_zip, sha256sums
from bundles.renderers.docs import render_install_sh
from bundles.renderers.engine import environment
from bundles.renderers.spec import PeerSpec
from devtools.bundlecase import FIXTURES, LAPTOP_PASSPHRASE, client_peer, gateway_peer, laptop_peer, site
from tests.unit.bundles.golden import assert_matches_golden

PEERS: dict[str, Callable[[], PeerSpec]] = {
    "www.example.com": gateway_peer,
    "client.example.com": client_peer,
    "laptop.example.com": laptop_peer,
}
SHELLS = [
    pytest.param(cmd, id=cmd[0])
    for cmd in (["dash"], ["bash", "--posix"])
    if shutil.which(cmd[0])
] or [pytest.param(["sh"], id="sh")]  # fmt: skip

STAND_IN_CONF = """\
[General]
Policy-file=\t\t/etc/isakmpd/isakmpd.policy
[ISAKMP-peer-gateway]
Local-address=\t\t@@MY_IP_ADDRESS@@
Address=\t\t192.0.34.72
[X509-certificates]
CA-directory=\t\t/etc/isakmpd/ca/
Cert-directory=\t\t/etc/isakmpd/certs/
Private-key=\t\t/etc/isakmpd/private/local.key
"""


def script(peer: PeerSpec) -> str:
    return render_install_sh(environment(), site(), peer)


def unpack(tmp_path: Path, peer: PeerSpec, *, crl: bool = False) -> Path:
    """The peer's bundle as the user has it: built by build_zip, unpacked under tmp_path/bundle."""
    files = [
        BundleFile("README.txt", b"stand-in README\n", 0o644),
        BundleFile("install.sh", script(peer).encode(), 0o755),
        BundleFile("isakmpd/isakmpd.conf", STAND_IN_CONF.encode(), 0o600),
        BundleFile("isakmpd/isakmpd.policy", b'Authorizer: "POLICY"\n', 0o600),
        BundleFile("isakmpd/ca/ca.crt", (FIXTURES / "ca.crt").read_bytes(), 0o644),
        BundleFile(f"isakmpd/certs/{peer.fqdn}.crt", peer.cert_pem.encode(), 0o644),
    ]
    if peer.is_gateway:
        files.append(BundleFile("firewall/pf.conf", b"block all\n", 0o600))
    else:
        files.append(BundleFile("firewall/ipf.rules", b"pass out quick on em0 from @@MY_IP_ADDRESS@@ to any\n", 0o600))
    if peer.portal_key_pem is not None:
        files.append(BundleFile("isakmpd/private/local.key", peer.portal_key_pem.encode(), 0o600))
    if crl:
        files.append(BundleFile("isakmpd/crls/ca.crl", b"-----BEGIN X509 CRL-----\nstand-in\n", 0o644))
    files.append(BundleFile("SHA256SUMS", sha256sums(files).encode(), 0o644))
    with zipfile.ZipFile(io.BytesIO(build_zip(peer.fqdn, files))) as archive:
        archive.extractall(tmp_path / "bundle")
    return tmp_path / "bundle" / peer.fqdn


def run(
    shell: list[str], bundle: Path, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run install.sh from another directory (it must cd to its own), never with a terminal."""
    return subprocess.run(
        [*shell, str(bundle / "install.sh"), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mode, p.read_bytes() if p.is_file() else b"")
        for p in sorted(root.rglob("*"))
    }


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def passfile(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(LAPTOP_PASSPHRASE + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("fqdn", sorted(PEERS))
def test_it_matches_the_golden_install_sh(fqdn: str) -> None:
    assert_matches_golden(f"casestudy/{fqdn}/install.sh", script(PEERS[fqdn]()))


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("fqdn", sorted(PEERS))
def test_it_parses_with_sh_n(tmp_path: Path, shell: list[str], fqdn: str) -> None:
    path = tmp_path / "install.sh"
    path.write_text(script(PEERS[fqdn]()))
    result = subprocess.run([*shell, "-n", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(
    shutil.which("shellcheck") is None and os.environ.get("CA_PORTAL_REQUIRE_TOOLS") != "1",
    reason="shellcheck is not installed (CI installs it and sets CA_PORTAL_REQUIRE_TOOLS=1)",
)
@pytest.mark.parametrize("fqdn", sorted(PEERS))
def test_it_passes_shellcheck(tmp_path: Path, fqdn: str) -> None:
    path = tmp_path / "install.sh"
    path.write_text(script(PEERS[fqdn]()))
    result = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("shell", SHELLS)
def test_it_changes_nothing_in_a_dry_run(tmp_path: Path, shell: list[str], passfile: Path) -> None:
    bundle = unpack(tmp_path, laptop_peer(), crl=True)
    before = snapshot(tmp_path)
    target = tmp_path / "target"
    args = ("--dry-run", "--address", "192.0.2.10", "--passphrase-file", str(passfile), str(target))
    result = run(shell, bundle, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert snapshot(tmp_path) == before
    assert not target.exists()
    out = result.stdout
    assert f"would run: mkdir -m 0700 {target}/private" in out
    assert f"pkey -in isakmpd/private/local.key -out {target}/private/local.key" in out
    assert f"s/@@MY_IP_ADDRESS@@/192.0.2.10/g -e s|/etc/isakmpd/|{target}/|g isakmpd/isakmpd.conf" in out
    assert f"install -m 0644 isakmpd/crls/ca.crl {target}/crls/ca.crl" in out
    assert "nothing was changed" in out


@pytest.mark.parametrize("shell", SHELLS)
def test_it_installs_the_laptop_bundle(tmp_path: Path, shell: list[str], passfile: Path) -> None:
    bundle = unpack(tmp_path, laptop_peer())
    target = tmp_path / "etc" / "isakmpd"
    target.parent.mkdir()
    args = ("--address", "192.0.2.10", "--passphrase-file", str(passfile), str(target))
    result = run(shell, bundle, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    assert mode(target) == 0o755
    assert mode(target / "private") == 0o700
    assert mode(target / "isakmpd.conf") == 0o600
    assert mode(target / "isakmpd.policy") == 0o600
    assert mode(target / "ca" / "ca.crt") == 0o644
    assert mode(target / "certs" / "laptop.example.com.crt") == 0o644
    assert mode(target / "private" / "local.key") == 0o600
    assert mode(target / "ipf.rules") == 0o600
    assert sorted(p.name for p in (target / "private").iterdir()) == ["local.key"]  # no temp file left

    conf = (target / "isakmpd.conf").read_text()
    assert "@@MY_IP_ADDRESS@@" not in conf
    assert "Local-address=\t\t192.0.2.10\n" in conf
    assert "\t/etc/isakmpd/" not in conf
    assert f"CA-directory=\t\t{target}/ca/\n" in conf
    assert f"Private-key=\t\t{target}/private/local.key\n" in conf
    assert (target / "ipf.rules").read_text() == "pass out quick on em0 from 192.0.2.10 to any\n"
    assert (bundle / "isakmpd" / "isakmpd.conf").read_text() == STAND_IN_CONF  # the bundle stays as it came

    installed = serialization.load_pem_private_key((target / "private" / "local.key").read_bytes(), password=None)
    fixture = serialization.load_pem_private_key((FIXTURES / "laptop.example.com.key").read_bytes(), password=None)
    assert isinstance(installed, rsa.RSAPrivateKey)
    assert isinstance(fixture, rsa.RSAPrivateKey)
    assert installed.public_key().public_numbers() == fixture.public_key().public_numbers()


def test_it_refuses_to_overwrite_without_force(tmp_path: Path, passfile: Path) -> None:
    bundle = unpack(tmp_path, laptop_peer())
    target = tmp_path / "target"
    args = ("--address", "192.0.2.10", "--passphrase-file", str(passfile), str(target))
    assert run(["sh"], bundle, *args, cwd=tmp_path).returncode == 0
    (target / "isakmpd.policy").write_text("local edit\n")
    before = snapshot(target)

    again = run(["sh"], bundle, *args, cwd=tmp_path)
    assert again.returncode == 1
    assert f"{target}/isakmpd.conf" in again.stderr
    assert f"{target}/private/local.key" in again.stderr
    assert "--force" in again.stderr
    assert snapshot(target) == before

    forced = run(["sh"], bundle, "--force", *args, cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (target / "isakmpd.policy").read_text() == 'Authorizer: "POLICY"\n'
    assert mode(target / "private" / "local.key") == 0o600


@pytest.mark.parametrize("shell", SHELLS)
def test_it_refuses_a_wrong_passphrase(tmp_path: Path, shell: list[str]) -> None:
    bundle = unpack(tmp_path, laptop_peer())
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    target = tmp_path / "target"
    args = ("--address", "192.0.2.10", "--passphrase-file", str(wrong), str(target))
    result = run(shell, bundle, *args, cwd=tmp_path)
    assert result.returncode != 0
    assert "could not decrypt" in result.stderr
    assert "passphrase" in result.stderr
    assert "eopenssl30" in result.stderr
    assert not target.exists()  # the directories it made are gone again, and no key was written

    dry = run(shell, bundle, "--dry-run", *args, cwd=tmp_path)
    assert dry.returncode != 0
    assert "could not decrypt" in dry.stderr


@pytest.mark.parametrize(
    "address",
    ["1.2.3.4;id", "$(touch PWNED)", "`touch PWNED`", "1.2.3.4\ntouch PWNED", "1.2.3.4 ", " 1.2.3.4", "1.2.3.4/24",
     "999.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "127.0.0.1", "0.1.2.3", "224.0.0.1", "", "-1.2.3.4", "1..2.3",
     "s/x/y/", "1.2.3.4/g;e touch PWNED"],
)  # fmt: skip
def test_it_refuses_an_unsafe_address(tmp_path: Path, address: str) -> None:
    bundle = unpack(tmp_path, laptop_peer())
    target = tmp_path / "target"
    result = run(["sh"], bundle, "--address", address, str(target), cwd=tmp_path)
    assert result.returncode == 1
    assert "--address must be a public IPv4 address" in result.stderr
    assert not target.exists()
    assert not (tmp_path / "PWNED").exists()
    assert not (bundle / "PWNED").exists()


@pytest.mark.parametrize(
    "target", ["relative/dir", "/tmp/x;touch PWNED", "/tmp/$(touch PWNED)", "/tmp/a b", "/tmp/a|b", "/", "/tmp/x&y"]
)
def test_it_refuses_an_unsafe_target(tmp_path: Path, target: str) -> None:
    bundle = unpack(tmp_path, laptop_peer())
    result = run(["sh"], bundle, "--dry-run", "--address", "192.0.2.10", target, cwd=tmp_path)
    assert result.returncode == 1
    assert "TARGET_DIR" in result.stderr
    assert not (tmp_path / "PWNED").exists()


def test_it_uses_the_default_target_without_rewriting_paths(tmp_path: Path) -> None:
    if Path("/etc/isakmpd").exists():
        pytest.skip("this host has an /etc/isakmpd")
    bundle = unpack(tmp_path, client_peer())
    result = run(["sh"], bundle, "--dry-run", "--address", "192.0.2.10", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sed -e s/@@MY_IP_ADDRESS@@/192.0.2.10/g isakmpd/isakmpd.conf > /etc/isakmpd/isakmpd.conf" in result.stdout
    assert "s|" not in result.stdout


def test_it_uses_the_registered_address_of_the_gateway(tmp_path: Path) -> None:
    bundle = unpack(tmp_path, gateway_peer())
    target = tmp_path / "target"
    result = run(["sh"], bundle, str(target), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "192.0.34.72 (from the address registered at the portal)" in result.stdout
    assert "Local-address=\t\t192.0.34.72\n" in (target / "isakmpd.conf").read_text()
    assert not (target / "ipf.rules").exists()  # the gateway's pf.conf is loaded by hand (README)
    assert "pfctl -nf firewall/pf.conf" in result.stdout


def test_it_tells_a_client_with_its_own_key_what_to_do(tmp_path: Path) -> None:
    bundle = unpack(tmp_path, client_peer())
    target = tmp_path / "target"
    result = run(["sh"], bundle, "--address", "192.0.2.10", str(target), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"there is no private key at {target}/private/local.key" in result.stderr
    assert "isakmpd cannot use ECDSA" in result.stderr
    assert not (target / "private" / "local.key").exists()


def test_it_checks_the_mode_of_the_clients_own_key(tmp_path: Path) -> None:
    bundle = unpack(tmp_path, client_peer())
    target = tmp_path / "target"
    (target / "private").mkdir(parents=True, mode=0o700)
    key = target / "private" / "local.key"
    key.write_bytes((FIXTURES / "client.example.com.key").read_bytes())
    key.chmod(0o644)
    result = run(["sh"], bundle, "--address", "192.0.2.10", str(target), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"chmod 600 {key}" in result.stderr

    key.chmod(0o600)
    result = run(["sh"], bundle, "--force", "--address", "192.0.2.10", str(target), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "local.key" not in result.stderr


def test_it_refuses_a_damaged_bundle(tmp_path: Path) -> None:
    bundle = unpack(tmp_path, client_peer())
    (bundle / "isakmpd" / "isakmpd.policy").write_text('Authorizer: "POLICY"\nLicensees: "anyone"\n')
    target = tmp_path / "target"
    result = run(["sh"], bundle, "--address", "192.0.2.10", str(target), cwd=tmp_path)
    assert result.returncode == 1
    assert "SHA256SUMS does not match" in result.stderr
    assert not target.exists()


def test_it_checks_sums_with_openssl_when_sha256sum_is_missing(tmp_path: Path) -> None:
    # A PATH with every usual tool but sha256sum, as on a BSD without coreutils.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for directory in ("/usr/bin", "/bin"):
        for tool in Path(directory).iterdir():
            if tool.name != "sha256sum" and not os.path.lexists(bindir / tool.name):
                (bindir / tool.name).symlink_to(tool)
    env = {**os.environ, "PATH": str(bindir)}
    bundle = unpack(tmp_path, client_peer())
    target = tmp_path / "target"
    ok = run(["sh"], bundle, "--dry-run", "--address", "192.0.2.10", str(target), cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr

    (bundle / "isakmpd" / "ca" / "ca.crt").write_text("not the CA\n")
    bad = run(["sh"], bundle, "--dry-run", "--address", "192.0.2.10", str(target), cwd=tmp_path, env=env)
    assert bad.returncode == 1
    assert "isakmpd/ca/ca.crt does not match SHA256SUMS" in bad.stderr


def test_it_refuses_unknown_options(tmp_path: Path) -> None:
    bundle = unpack(tmp_path, client_peer())
    result = run(["sh"], bundle, "--adress", "192.0.2.10", cwd=tmp_path)
    assert result.returncode == 1
    assert "unknown option: --adress" in result.stderr
    assert "Usage: sh install.sh" in result.stderr
