"""Shared fixtures: the pre-generated PKI, a CA, personas and signing on/off."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

FIXTURES = Path(__file__).parent / "fixtures" / "pki"

# The integration tests that take longest (a minute or more on a loaded 2-core machine), started
# first under pytest-xdist so that they do not make the tail of the run; see pytest_collection_modifyitems.
SLOWEST_FIRST = (
    "tests/integration/test_worker_crash.py::test_it_survives_a_pool_child_killed_at_every_failpoint",
    "tests/integration/test_serve.py",
    "tests/integration/test_est_strongswan.py",
    "tests/integration/test_secret_canary.py",
    "tests/integration/test_broker_down.py",
)


# Tests that share a module-scoped deployment run in one xdist worker, which starts it once.
TOGETHER_BY_MODULE = ("tests/browser/",)


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before pytest-xdist's own schedulers
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` (make test): every test is a unit of work of its own, handed to the next
    free worker, except that the tests of a module under TOGETHER_BY_MODULE form one unit. (xdist's
    own loadgroup reads xdist_group marks into node ids, which pytest 9.2 no longer lets it change.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduler(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module.startswith(TOGETHER_BY_MODULE) else nodeid

    return Scheduler(config, log)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The run is over (in the xdist controller, or in a run without xdist): drop the set-up
    templates its integration stacks shared (devtools.stack.Stack.setup)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        from devtools.stack import drop_templates

        drop_templates()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (each worker collects, in the same order), the tests that wait on real
    processes go first, the slowest of them at the head, each followed by two quick ones: a worker
    is handed its next tests while it runs one, and those should not be slow ones as well.
    A run without xdist keeps the collection order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return

    def rank(item: pytest.Item) -> int:
        return next((i for i, prefix in enumerate(SLOWEST_FIRST) if item.nodeid.startswith(prefix)), len(SLOWEST_FIRST))

    slow = sorted((item for item in items if item.get_closest_marker("integration")), key=rank)
    quick = [item for item in items if not item.get_closest_marker("integration")]
    ordered: list[pytest.Item] = []
    for item in slow:
        ordered.append(item)
        ordered.extend(quick[:2])
        del quick[:2]
    items[:] = ordered + quick


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture(scope="session", autouse=True)
def _each_rsa_key_checked_once() -> Iterator[None]:
    """cryptography checks an RSA private key's primes on every load, about 40 ms of CPU for
    RSA-2048, and the suite loads the same few keys thousands of times (each ``ca`` fixture imports
    the fixture CA key, each signing test loads it back from the key store). Here each distinct
    key is checked once per test process; a key that fails the check is not remembered, so it
    fails every time, and a wrong passphrase fails as before. Keys are immutable: handing out the
    same object again is the same as loading it again."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    real = serialization.load_pem_private_key
    checked: dict[bytes, Any] = {}

    def load(
        data: bytes, password: bytes | None, backend: Any = None, *, unsafe_skip_rsa_key_validation: bool = False
    ) -> Any:
        key = real(data, password, backend, unsafe_skip_rsa_key_validation=True)
        if unsafe_skip_rsa_key_validation or not isinstance(key, rsa.RSAPrivateKey):
            return key  # nothing else is checked on load
        der = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        if der not in checked:
            checked[der] = real(data, password, backend)  # the full check; raises for a bad key
        return checked[der]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(serialization, "load_pem_private_key", load)
        yield


@pytest.fixture
def signer() -> Iterator[None]:
    """Turn this test process into a signer (as the signer worker's start-up does), then back."""
    from authority import keystore

    keystore.enable_signing()
    keystore.forget_keys()
    yield
    keystore._signing_enabled = False
    keystore.forget_keys()


@pytest.fixture
def sent_tasks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """Record what is sent to the broker (task name, args, options) instead of sending it."""
    from ca_portal.celery import app

    sent: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def send_task(name: str, args: tuple[Any, ...] = (), **options: Any) -> None:
        sent.append((name, tuple(args), options))

    monkeypatch.setattr(app, "send_task", send_task)
    return sent


@pytest.fixture
def broker_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every send to the broker fails as kombu does when Redis refuses the connection."""
    from kombu.exceptions import OperationalError

    from ca_portal.celery import app

    def down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(app, "send_task", down)


@pytest.fixture
def key_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh CA key dir and passphrase file per test, so tests never share key files."""
    old_dir, old_pass = settings.CA_KEY_DIR, settings.CA_KEY_PASSPHRASE_FILE
    settings.CA_KEY_DIR = tmp_path / "keys"
    settings.CA_KEY_PASSPHRASE_FILE = tmp_path / "passphrase"
    yield tmp_path
    settings.CA_KEY_DIR, settings.CA_KEY_PASSPHRASE_FILE = old_dir, old_pass
    shutil.rmtree(tmp_path / "keys", ignore_errors=True)


@pytest.fixture
def ca(db: Any, signer: None, key_dir: Path) -> Any:
    """The active CA, imported from the pre-generated RSA-2048 fixture (fast, deterministic)."""
    from authority.services import ca_import

    return ca_import(
        cert_pem=fixture_bytes("ca-rsa2048.crt"),
        key_pem=fixture_bytes("ca-rsa2048.key"),
        key_passphrase=None,
        allow_legacy=False,
        actor="test",
    )


@pytest.fixture
def audit_tamperable(db: Any) -> Iterator[None]:
    """For tests that play the attacker on the audit log: on PostgreSQL the append-only trigger is
    disabled (as a table owner could), so that the hash chain is what must catch the change."""
    from django.db import connection

    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE authority_auditevent DISABLE TRIGGER audit_append_only")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE authority_auditevent ENABLE TRIGGER audit_append_only")


def _user(django_user_model: Any, name: str, *, groups: tuple[str, ...] = (), superuser: bool = False) -> Any:
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user(name, f"{name}@example.org", "correct horse battery")
    user.is_superuser = superuser
    user.save()
    for group in groups:
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def owner(db: Any, django_user_model: Any) -> Any:
    return _user(django_user_model, "alice")


@pytest.fixture
def other_user(db: Any, django_user_model: Any) -> Any:
    return _user(django_user_model, "mallory")


@pytest.fixture
def admin(db: Any, django_user_model: Any) -> Any:
    return _user(django_user_model, "carol", groups=("ca-admin",))


@pytest.fixture
def second_admin(db: Any, django_user_model: Any) -> Any:
    return _user(django_user_model, "dave", groups=("ca-admin",))


@pytest.fixture
def auditor(db: Any, django_user_model: Any) -> Any:
    return _user(django_user_model, "erin", groups=("auditor",))


def login(client: Any, user: Any) -> None:
    """Sign ``user`` in on a test client; CA admins also pass two-factor, as they must in the browser."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from core.roles import is_ca_admin

    client.force_login(user)
    if is_ca_admin(user):
        device, _ = TOTPDevice.objects.get_or_create(user=user, name="test", defaults={"confirmed": True})
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()


# --- an issued VPN gateway and client (the case study's www.example.com and client.example.com) ---


@pytest.fixture
def gateway(ca: Any, admin: Any, second_admin: Any) -> Any:
    peer, _ = _issue_peer(
        admin, second_admin, "www.example.com", kind="server", networks=("10.1.1.0/24",), address="192.0.34.72"
    )
    return peer


@pytest.fixture
def client_peer(gateway: Any, owner: Any, admin: Any) -> Any:
    peer, _ = _issue_peer(owner, admin, "client.example.com", networks=("10.10.10.0/24",))
    return peer


def _issue_peer(*args: Any, **kwargs: Any) -> Any:
    from tests.bundles.conftest import issue

    return issue(*args, **kwargs)
