"""How long a CRL lives, how often it is renewed and how often peers fetch it: the trade-off in one place.

- isakmpd and iked verify a peer with LibreSSL's X509_verify_cert and CRL checking as soon as a CRL is
  loaded, and strongSwan refuses a peer whose CA's CRL it holds but cannot trust. An expired CRL fails
  every verification: a peer whose CRL runs out refuses every tunnel.
- Every peer fetches the CRL every ``CRL_REFRESH_HOURS`` (bin/ca-portal-refresh, scheduled by install.sh).
  A revocation makes a new CRL at once, so it reaches every peer within the refresh interval, whatever
  the validity.
- The CRL is renewed every ``CRL_RENEW_HOURS`` (and at half-life at the latest), so a peer that has
  fetched it holds one with at least ``validity - renewal - refresh`` left: that is how long the peer
  keeps working without reaching the portal (30 days - 24 h - 6 h = 28 days 18 h by default).
- The price of a long validity: a peer cut off from the portal (or whose fetches an attacker blocks)
  keeps accepting a certificate revoked meanwhile until its CRL expires. A short validity bounds that,
  but then a portal outage longer than the validity takes every tunnel down. Long validity renewed
  often keeps peers up through outages while a reachable portal still spreads revocations within hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core import checks


@dataclass(frozen=True)
class CrlPolicy:
    validity: timedelta
    renew_every: timedelta
    refresh_every: timedelta

    @property
    def renewed_after(self) -> timedelta:
        """The age at which a CRL is replaced: the renewal interval, or half-life if that comes first."""
        return min(self.renew_every, self.validity / 2)

    @property
    def offline_tolerance(self) -> timedelta:
        """How long a peer that refreshes on schedule keeps a valid CRL after it last reached the portal."""
        return max(timedelta(0), self.validity - self.renewed_after - self.refresh_every)

    def spans(self) -> dict[str, str]:
        """The figures in words, for the CA page."""
        return {
            "validity": _span(self.validity),
            "renewed_after": _span(self.renewed_after),
            "refresh_every": _span(self.refresh_every),
            "offline_tolerance": _span(self.offline_tolerance),
        }

    def warnings(self) -> list[str]:
        problems = []
        if self.validity < 2 * self.refresh_every:
            problems.append(
                f"CRL_VALIDITY_DAYS ({_span(self.validity)}) is shorter than twice the peers' refresh interval "
                f"CRL_REFRESH_HOURS ({_span(self.refresh_every)}): a peer that misses one refresh holds an "
                "expired CRL and refuses every tunnel. Make the validity at least twice the refresh interval."
            )
        elif self.offline_tolerance < timedelta(days=2):
            problems.append(
                f"With a CRL valid for {_span(self.validity)}, renewed after {_span(self.renewed_after)} and "
                f"fetched every {_span(self.refresh_every)}, a peer that cannot reach the portal for more than "
                f"{_span(self.offline_tolerance)} refuses every tunnel. A longer CRL_VALIDITY_DAYS (e.g. 30) "
                "renewed daily keeps peers working through an outage."
            )
        return problems


def crl_policy() -> CrlPolicy:
    return CrlPolicy(
        validity=timedelta(days=settings.CRL_VALIDITY_DAYS),
        renew_every=timedelta(hours=settings.CRL_RENEW_HOURS),
        refresh_every=timedelta(hours=settings.CRL_REFRESH_HOURS),
    )


def _span(value: timedelta) -> str:
    hours = int(value.total_seconds() // 3600)
    days, rest = divmod(hours, 24)
    words = f"{days} day{'s' if days != 1 else ''}" if days else ""
    if rest or not days:
        words = f"{words} {rest} h".strip()
    return words


def check_crl_policy(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A system check (``manage.py check``, ``migrate``, ``runserver``): the CRL settings keep peers up."""
    return [checks.Warning(message, id="authority.W001") for message in crl_policy().warnings()]
