"""The store: feedbot's database, and the only place that builds SQL.

- :mod:`~feedbot.store.db` engines, sessions, migrations (Alembic, in ``migrations/``) and what
  counts as the database being unavailable.
- :mod:`~feedbot.store.models` releases, checks, deliveries, digests, acknowledgements, mutes,
  exception history; :mod:`~feedbot.store.spans` the embedded trace store's table.
- :mod:`~feedbot.store.queries` every statement about releases, checks, the outbox, digests and
  the metrics; :mod:`~feedbot.store.acknowledgements` what people said with Slack's buttons;
  :mod:`~feedbot.store.span_queries` the embedded trace store's statements;
  :mod:`~feedbot.store.history` the code history (per operation, function and file, per check)
  and its read API.

Functions take a Session; callers commit. ``tests/unit/test_layout.py`` fails when a module
outside this package imports a statement builder.
"""
