"""Test settings: the real settings module, with a private var dir and a fast password hasher."""

import hashlib
import os
import tempfile
from pathlib import Path

# A var dir of this test process's own; under pytest-xdist each worker has its own (the workers
# inherit the controller's environment, so the worker name goes into the path).
_var_dir = os.environ.get("CA_PORTAL_VAR_DIR") or tempfile.mkdtemp(prefix="ca_portal_test_")
os.environ["CA_PORTAL_VAR_DIR"] = _var_dir
if _worker := os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["CA_PORTAL_VAR_DIR"] = os.path.join(_var_dir, _worker)
# The metrics files too: the settings only set a default, and the workers inherited the
# controller's, so they counted into (and cleared) one shared folder.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(os.environ["CA_PORTAL_VAR_DIR"], "metrics")

from ca_portal.settings import *  # noqa: E402, F403
from ca_portal.settings import BASE_DIR, DATABASES  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
SITE_URL = "https://ca.example.org"
CA_CRL_URL = f"{SITE_URL}/crl.der"

# The key store's scrypt work factor (production: pki.keys.SCRYPT_N = 2**14, ~0.1 s per key stored
# and again per key loaded). Tests that are about the work factor call pki.keys directly or
# override this setting; every other CA key a test stores costs next to nothing.
CA_KEY_SCRYPT_N = 2**4

# On PostgreSQL the test database's name carries this checkout's path (pytest-django appends
# _gw0, _gw1, ... per xdist worker), so that two checkouts testing on one server never share one.
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    _checkout = hashlib.sha256(str(Path(BASE_DIR).resolve()).encode()).hexdigest()[:8]
    DATABASES["default"].setdefault("TEST", {})["NAME"] = f"test_{DATABASES['default']['NAME']}_{_checkout}"
