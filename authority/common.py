"""What the authority's service modules share: who acted, the refusal type, the active CA, serials.

Import these through ``authority.services``; they live here so that ``authority.ca_setup`` and
``authority.issuance`` can use them without importing the services module that re-exports them.
"""

from __future__ import annotations

import os
import pwd
from datetime import datetime

from django.contrib.auth.models import User
from django.utils import timezone

from authority.models import CertificateAuthority
from core.errors import ServiceError
from pki.profiles import serial_from_random

Actor = User | str | None


class AuthorityError(ServiceError):
    """A refused CA operation (409 unless it says otherwise); the message is meant for the person who asked."""

    default_status = 409


def actor_name(actor: Actor) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    return f"user:{actor.get_username()}"


def cli_actor() -> str:
    """The audit name of whoever runs a management command on the CA host."""
    try:
        return f"cli:{pwd.getpwuid(os.getuid()).pw_name}"
    except KeyError:
        return f"cli:uid{os.getuid()}"


def active_ca() -> CertificateAuthority | None:
    return CertificateAuthority.objects.filter(is_active=True).first()


def utc_now() -> datetime:
    return timezone.now().replace(microsecond=0)


def new_serial() -> int:
    """A fresh 159-bit serial from the OS CSPRNG (CA certificates and leaves alike)."""
    while True:
        try:
            return serial_from_random(os.urandom(20))
        except ValueError:
            continue
