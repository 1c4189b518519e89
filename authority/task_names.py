"""The names of the authority app's Celery tasks: what ``core.tasks.send_by_name`` and beat send."""

CERTIFICATES_ISSUE_PENDING = "authority.certificates_issue_pending"
REQUESTS_REQUEUE_STALE = "authority.requests_requeue_stale"
CRL_PUBLISH = "authority.crl_publish"
CRL_RENEW_IF_DUE = "authority.crl_renew_if_due"
AUDIT_CHECK = "authority.audit_check"
SIGNER_HEARTBEAT = "authority.signer_heartbeat"
AUDIT_CHECKPOINT = "authority.audit_checkpoint"
