"""Strict environment parsing: a bad value stops the process at start-up with a clear message."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value not in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
        raise ImproperlyConfigured(f"{name} must be one of true/false/1/0/yes/no/on/off, got {raw!r}")
    return value in {"true", "1", "yes", "on"}


def env_int(name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_path(name: str, default: Path) -> Path:
    raw = os.environ.get(name)
    return Path(raw).expanduser().resolve() if raw else default


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {'/'.join(choices)}, got {raw!r}")
    return value


def renewal_reminder_days(raw: str, *, name: str = "RENEWAL_REMINDER_DAYS") -> tuple[int, ...]:
    """Parse "30,7,1": distinct whole numbers of days, 1 to 825, largest first. Anything else stops start-up."""
    days: list[int] = []
    for item in raw.split(","):
        text = item.strip()
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 825:
            raise ImproperlyConfigured(
                f"{name} must be a comma list of whole numbers of days between 1 and 825, like 30,7,1; got {raw!r}"
            )
        if int(text) in days:
            raise ImproperlyConfigured(f"{name} names {text} days twice: {raw!r}")
        days.append(int(text))
    return tuple(sorted(days, reverse=True))


def env_file_or_none(name: str) -> Path | None:
    """The file a variable names (it must exist), or None when the variable is unset or empty."""
    raw = os.environ.get(name, "")
    if not raw:
        return None
    path = Path(raw).expanduser().resolve()
    if not path.is_file():
        raise ImproperlyConfigured(f"{name} names {raw!r}, which is not a file")
    return path


def env_networks(name: str) -> list[str]:
    """A comma list of IP addresses or networks (either family); anything else stops start-up."""
    addresses = env_list(name, [])
    for address in addresses:
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must be a comma list of addresses or networks, got {address!r}"
            ) from None
    return addresses
