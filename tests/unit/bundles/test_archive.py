"""bundles.archive: deterministic zips with Unix modes and only safe names (docs/security.md T25)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

from bundles.archive import BundleFile, build_zip, content_disposition, sha256sums
from bundles.renderers.spec import SpecRejected

ROOT = "laptop.example.com"


def bundle_files() -> list[BundleFile]:
    files = [
        BundleFile("README.txt", b"read me\n", 0o644),
        BundleFile("install.sh", b"#!/bin/sh\necho hi\n", 0o755),
        BundleFile("isakmpd/isakmpd.conf", b"[General]\nLocal-address=@@MY_IP_ADDRESS@@\n", 0o600),
        BundleFile("isakmpd/isakmpd.policy", b'Authorizer: "POLICY"\n', 0o600),
        BundleFile("isakmpd/ca/ca.crt", b"-----BEGIN CERTIFICATE-----\nca\n", 0o644),
        BundleFile(f"isakmpd/certs/{ROOT}.crt", b"-----BEGIN CERTIFICATE-----\npeer\n", 0o644),
        BundleFile("isakmpd/private/local.key", b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n", 0o600),
        BundleFile("isakmpd/crls/ca.crl", b"-----BEGIN X509 CRL-----\n", 0o644),
        BundleFile("firewall/ipf.rules", b"block in all\n", 0o600),
        BundleFile("iked/iked.conf", b"ikev2 active\n", 0o600),
        BundleFile("swanctl/swanctl.conf", b"connections {}\n", 0o600),
    ]
    return [*files, BundleFile("SHA256SUMS", sha256sums(files).encode(), 0o644)]


EXPECTED_DIRS = {
    f"{ROOT}/": 0o755,
    f"{ROOT}/firewall/": 0o755,
    f"{ROOT}/iked/": 0o755,
    f"{ROOT}/isakmpd/": 0o755,
    f"{ROOT}/isakmpd/ca/": 0o755,
    f"{ROOT}/isakmpd/certs/": 0o755,
    f"{ROOT}/isakmpd/crls/": 0o755,
    f"{ROOT}/isakmpd/private/": 0o700,
    f"{ROOT}/swanctl/": 0o755,
}


def test_it_builds_the_same_bytes_twice() -> None:
    first = build_zip(ROOT, bundle_files())
    second = build_zip(ROOT, bundle_files())
    assert first == second
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()


def test_it_ignores_the_order_of_the_input() -> None:
    files = bundle_files()
    assert build_zip(ROOT, files) == build_zip(ROOT, list(reversed(files)))
    assert sha256sums(files) == sha256sums(reversed(files))


def test_it_writes_unix_modes_and_fixed_dates() -> None:
    expected = {f"{ROOT}/{f.path}": f.mode for f in bundle_files()}
    with zipfile.ZipFile(io.BytesIO(build_zip(ROOT, bundle_files()))) as archive:
        infos = archive.infolist()
        assert {i.filename for i in infos} == set(expected) | set(EXPECTED_DIRS)
        for info in infos:
            assert info.create_system == 3, info.filename
            assert info.date_time == (1980, 1, 1, 0, 0, 0), info.filename
            file_mode = info.external_attr >> 16
            if info.is_dir():
                assert stat.S_ISDIR(file_mode), info.filename
                assert stat.S_IMODE(file_mode) == EXPECTED_DIRS[info.filename], info.filename
            else:
                assert stat.S_ISREG(file_mode), info.filename
                assert (info.external_attr >> 16) & 0o777 == expected[info.filename], info.filename
                assert info.compress_type == zipfile.ZIP_DEFLATED
        assert archive.read(f"{ROOT}/install.sh") == b"#!/bin/sh\necho hi\n"
        assert archive.testzip() is None


def test_it_puts_every_directory_before_what_it_holds() -> None:
    with zipfile.ZipFile(io.BytesIO(build_zip(ROOT, bundle_files()))) as archive:
        names = archive.namelist()
    assert names[0] == f"{ROOT}/"
    for position, name in enumerate(names):
        assert name.startswith(f"{ROOT}/")
        parent = name.rstrip("/").rsplit("/", 1)[0] + "/"
        if name != f"{ROOT}/":
            assert names.index(parent) < position, name


@pytest.mark.parametrize(
    "path",
    [
        "../x",
        "/etc/passwd",
        "a//b",
        "a\\b",
        "a/./b",
        "a/../b",
        "..",
        ".",
        "a/",
        "",
        "caf\u00e9.txt",
        "a b",
        "a\nb",
        "a\x00b",
        "C:/x",
        "x" * 201,
    ],
)
def test_it_refuses_unsafe_paths(path: str) -> None:
    with pytest.raises(ValueError, match="refusing bundle path"):
        build_zip(ROOT, [BundleFile(path, b"x", 0o644)])
    with pytest.raises(ValueError, match="refusing bundle path"):
        sha256sums([BundleFile(path, b"x", 0o644)])


@pytest.mark.parametrize("root", ["", "../etc", "Laptop.example.com", "laptop", "a/b.example.com", "x.example.com\n"])
def test_it_refuses_a_bad_root(root: str) -> None:
    with pytest.raises(SpecRejected, match="FQDN"):
        build_zip(root, bundle_files())


@pytest.mark.parametrize("mode", [0o666, 0o4755, 0o1755, 0o777, 0o000, 0o020, -1])
def test_it_refuses_unsafe_modes(mode: int) -> None:
    with pytest.raises(ValueError, match="refusing mode"):
        build_zip(ROOT, [BundleFile("README.txt", b"x", mode)])


def test_it_refuses_duplicates_and_file_directory_clashes() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        build_zip(ROOT, [BundleFile("a", b"1", 0o644), BundleFile("a", b"2", 0o644)])
    with pytest.raises(ValueError, match="both a file and a directory"):
        build_zip(ROOT, [BundleFile("a", b"1", 0o644), BundleFile("a/b", b"2", 0o644)])


def test_it_leaves_sha256sums_out_of_its_own_list() -> None:
    files = bundle_files()
    text = sha256sums(files)
    listed = [line.split("  ", 1)[1] for line in text.splitlines()]
    assert "SHA256SUMS" not in listed
    assert listed == sorted(f.path for f in files if f.path != "SHA256SUMS")
    digest = hashlib.sha256(b"read me\n").hexdigest()
    assert text.splitlines()[0] == f"{digest}  README.txt"


@pytest.mark.skipif(shutil.which("unzip") is None, reason="needs Info-ZIP unzip")
def test_it_unzips_with_the_stored_modes_under_umask_022(tmp_path: Path) -> None:
    zip_path = tmp_path / f"{ROOT}.zip"
    zip_path.write_bytes(build_zip(ROOT, bundle_files()))
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        subprocess.run(["unzip", "-q", str(zip_path), "-d", str(out)], check=True, timeout=60)
    finally:
        os.umask(old)
    for item in bundle_files():
        assert stat.S_IMODE((out / ROOT / item.path).stat().st_mode) == item.mode, item.path
    for name, mode in EXPECTED_DIRS.items():
        assert stat.S_IMODE((out / name).stat().st_mode) == mode, name


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs sha256sum")
def test_it_writes_sha256sums_that_sha256sum_accepts(tmp_path: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(build_zip(ROOT, bundle_files()))) as archive:
        archive.extractall(tmp_path)
    bundle = tmp_path / ROOT
    result = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=bundle, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK") == len(bundle_files()) - 1

    (bundle / "isakmpd" / "isakmpd.policy").write_bytes(b'Authorizer: "POLICY"\nLicensees: "anyone"\n')
    result = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=bundle, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "isakmpd/isakmpd.policy: FAILED" in result.stdout


def test_it_makes_an_ascii_content_disposition() -> None:
    assert content_disposition(ROOT) == 'attachment; filename="laptop.example.com.zip"'
    assert content_disposition(ROOT).isascii()


@pytest.mark.parametrize("fqdn", ['x".example.com', "a\r\nSet-Cookie: x=1", "caf\u00e9.example.com", "../x.com"])
def test_it_refuses_a_content_disposition_for_a_bad_name(fqdn: str) -> None:
    with pytest.raises(SpecRejected, match="FQDN"):
        content_disposition(fqdn)
