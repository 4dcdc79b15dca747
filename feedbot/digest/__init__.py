"""The story and its renderings: what a developer reads, built from stored reports. Pure.

- :mod:`~feedbot.digest.text` titles and words shared by every rendering.
- :mod:`~feedbot.digest.blocks` the DM thread (parent, check replies, broadcasts) in Block Kit.
- :mod:`~feedbot.digest.answers` the ``/feedback`` answer.
- :mod:`~feedbot.digest.weekly` the weekly channel digest, the feedback meeting's agenda.
- :mod:`~feedbot.digest.plain` Block Kit as terminal text.
- :mod:`~feedbot.digest.chart` a changed route's picture (both versions' request times) as PNG
  bytes, drawn by matplotlib in memory.

Nothing here opens a session, sends or schedules: callers hand it rows and reports, and queue
what it returns (import-linter forbids it the database, HTTP and Slack clients).
"""
