"""The names of the enrollment app's Celery tasks: what ``core.tasks.send_by_name`` and beat send."""

PEER_KEY_GENERATE = "enrollment.peer_key_generate"
PEER_NOTIFY = "enrollment.peer_notify"
PEERS_ISSUED_NOTIFY = "enrollment.peers_issued_notify"
PORTAL_KEYS_REQUEUE_STALE = "enrollment.portal_keys_requeue_stale"
RENEWALS_SUPERSEDE = "enrollment.renewals_supersede"
RENEWAL_REMINDERS_SEND = "enrollment.renewal_reminders_send"
