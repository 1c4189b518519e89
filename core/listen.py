"""The site's URL and the address ``make run`` listens on: the default of one, and whether they agree.

``SITE_URL`` goes into every certificate (the CRL distribution point, ``<SITE_URL>/crl.der``) and
into the bundles' READMEs and refresh scripts. Unset, it is where ``manage.py serve`` listens:
``HOST`` and ``PORT``, the variables ``make run HOST=... PORT=...`` passes on (settings), or
serve's ``--host``/``--port`` (serve sets it in its children's environment).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Listening on every address says nothing about the name people use: this host itself, then.
_WILDCARDS = {"", "0.0.0.0", "::", "[::]", "*"}  # noqa: S104 (recognised, never bound to)


def site_url_for(host: str, port: int | str) -> str:
    """The http:// URL of a portal listening on ``host``:``port``, as a browser on this host reaches it."""
    name = host.strip()
    if name in _WILDCARDS:
        name = DEFAULT_HOST
    name = name.strip("[]")
    try:
        if ipaddress.ip_address(name).version == 6:
            name = f"[{name}]"
    except ValueError:
        pass  # a host name
    return f"http://{name}:{int(port)}"


def _parts(url: str) -> tuple[str, str, int]:
    split = urlsplit(url)
    port = split.port or (443 if split.scheme == "https" else 80)
    return split.scheme, (split.hostname or "").lower(), port


def site_url_mismatch(site_url: str, host: str, port: int | str) -> str:
    """Why ``site_url`` is not where serve listens ("" when it is), in one line for the console."""
    listening = site_url_for(host, port)
    scheme, name, site_port = _parts(site_url)
    _, listen_name, listen_port = _parts(listening)
    wildcard = host.strip() in _WILDCARDS
    if scheme == "http" and site_port == listen_port and (wildcard or name == listen_name):
        return ""
    return (
        f"SITE_URL is {site_url}, but serve listens on {listening}: every certificate's CRL distribution point "
        f"and every bundle README name SITE_URL. That is right behind a reverse proxy that forwards {site_url} "
        f"here; otherwise unset SITE_URL (it then follows --host/--port) or set SITE_URL={listening}."
    )
