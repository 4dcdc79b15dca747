"""Checks: a release's life after its deploy, from registering it to the messages it causes.

- :mod:`~feedbot.checks.register` records a release from a deploy event with its planned
  checks and its first message (:func:`~feedbot.checks.register.register_release`).
- :mod:`~feedbot.checks.plan` says when the checks are due (pure).
- :mod:`~feedbot.checks.ticker` is one pass of a replica's background work (run due checks,
  send due messages, prune spans) and the APScheduler job that repeats it.
- :mod:`~feedbot.checks.runner` claims a due check and runs plan → collect → analyse against
  the trace backend; ``feedbot report`` runs the same steps once, without a store.
- :mod:`~feedbot.checks.charts` picks the changed routes that get a chart in the thread and
  draws them (outside any transaction).
- :mod:`~feedbot.checks.recorder` commits a check's outcome and its messages in one
  transaction, only while this replica holds the check's lease.
- :mod:`~feedbot.checks.digests` is the weekly digest job, queued once across replicas.
- :mod:`~feedbot.checks.preview` is the pull-request preview (the changed functions'
  production footprint before a deploy, its DM, its one GitHub comment, and the link the
  deploy's check makes back to it); :mod:`~feedbot.checks.preview_text` renders it.

The database is the source of truth for what is due, claimed and done; messages leave through
the outbox (:mod:`feedbot.notify.outbox`). Built by :mod:`feedbot.runtime`; imports the
analysis, backends, digest, notify and store, never web/ or slack/.
"""
