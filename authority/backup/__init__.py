"""Backup and restore of a whole deployment: ``manage.py backup`` and ``manage.py restore`` (docs/backup.md).

- ``stream``: the encrypted container (scrypt, chunked AES-256-GCM); ``archive``: the tar and its
  manifest inside it. Both pure: ``cryptography`` and the standard library only.
- ``database``: a consistent snapshot of the database and its restore (pg_dump/pg_restore, SQLite's
  online backup API).
- ``files``: what of the var dir goes in (the encrypted CA key, the secret key, the audit checkpoints,
  the site's template overrides) and where it goes back. Never the CA key passphrase.
- ``service``: ``backup_create`` and ``backup_restore``, which the commands call.
"""
