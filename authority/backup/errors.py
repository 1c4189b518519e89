"""The one error of backup and restore: its message says what to do (pure, like ``archive``)."""


class BackupError(Exception):
    """A backup or restore that cannot go ahead; nothing is half-written when it is raised before the
    restore's first change (the target check), and the message says what was changed otherwise."""
