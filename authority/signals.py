"""What the authority app announces; the apps above subscribe in their ``AppConfig.ready()``.

This is the one way a lower app tells the upper ones what happened: it never names them, their
tasks or their task names. Every signal is sent after the transaction that made the change has
committed (``transaction.on_commit``), in the process that made it (often the signer), so a
receiver must be quick: queue a task or wake a sweeper, nothing more.
"""

from __future__ import annotations

from django.dispatch import Signal

# request_ids: list[int], the requests of one signer batch that asked to be announced.
certificates_issued = Signal()
# certificate_ids: list[int].
certificates_revoked = Signal()
# crl_id: int, the new CRL (after a revocation, on schedule or by hand).
crl_published = Signal()
