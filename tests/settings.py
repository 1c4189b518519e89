"""Test settings: the real settings module, with a private var dir and a fast password hasher."""

import os
import tempfile

os.environ.setdefault("CA_PORTAL_VAR_DIR", tempfile.mkdtemp(prefix="ca_portal_test_"))

from ca_portal.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
SITE_URL = "https://ca.example.org"
CA_CRL_URL = f"{SITE_URL}/crl.der"
