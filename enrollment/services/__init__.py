"""The write path for peers and the site policy: one function per state change, each audited.

One module per concept; callers import from here (``from enrollment import services``). Reads,
the policy's included, are in ``enrollment.selectors``.

- ``policy``: the site policy (``policy_update``)
- ``registration``: a new peer (``peer_register``, ``peer_register_full``)
- ``portal_keys``: keys the signer makes for peers (``peer_key_generate``, ``portal_keys_requeue_stale``)
- ``decisions``: approve or reject (``peer_approve``, ``peer_reject``)
- ``notifications``: mail to owners (``peer_notify``, ``peers_issued_announce``, ``peers_issued_notify``)
- ``revocation``: ``peer_revoke``
- ``renewal``: ``peer_renew``, ``renewal_auto_approve``, ``renewals_supersede``
- ``reminders``: ``renewal_reminders_send``
- ``est``: EST enrollment (``peer_est_enroll``, ``peer_est_reenroll``)
"""

from __future__ import annotations

from enrollment.services.decisions import MAX_REASON, peer_approve, peer_reject
from enrollment.services.errors import EnrollmentError
from enrollment.services.est import est_actor, peer_est_enroll, peer_est_reenroll
from enrollment.services.notifications import peer_notify, peers_issued_announce, peers_issued_notify
from enrollment.services.policy import policy_update
from enrollment.services.portal_keys import peer_key_generate, portal_keys_requeue_stale
from enrollment.services.registration import (
    MAX_NETWORKS,
    Registration,
    parse_networks,
    peer_register,
    peer_register_full,
)
from enrollment.services.reminders import renewal_reminders_send
from enrollment.services.renewal import (
    AUTO_RENEWAL_ACTOR,
    SUPERSEDE_ACTOR,
    peer_renew,
    renewal_auto_approve,
    renewals_supersede,
)
from enrollment.services.revocation import OWNER_REASONS, peer_revoke

__all__ = [
    "AUTO_RENEWAL_ACTOR",
    "MAX_NETWORKS",
    "MAX_REASON",
    "OWNER_REASONS",
    "SUPERSEDE_ACTOR",
    "EnrollmentError",
    "Registration",
    "est_actor",
    "parse_networks",
    "peer_approve",
    "peer_est_enroll",
    "peer_est_reenroll",
    "peer_key_generate",
    "peer_notify",
    "peer_register",
    "peer_register_full",
    "peer_reject",
    "peer_renew",
    "peer_revoke",
    "peers_issued_announce",
    "peers_issued_notify",
    "policy_update",
    "portal_keys_requeue_stale",
    "renewal_auto_approve",
    "renewal_reminders_send",
    "renewals_supersede",
]
