"""Notifiers: where rendered feedback goes.

The contract is :class:`feedbot.notify.base.Notifier`; implementations, one module each:

* ``console`` — :class:`~feedbot.notify.console.ConsoleNotifier`, the default when no Slack
  token is configured, and the fast test double.
* ``slack`` — :class:`~feedbot.notify.slack.SlackNotifier` over an injected ``WebClient``
  (build it with :func:`~feedbot.notify.slack.build_web_client`).

* ``outbox`` — :class:`~feedbot.notify.outbox.OutboxSender`: every message is a row first and
  leaves exactly once, whatever crashes or Slack answers.

Importing this package does not import slack_sdk; the composition root (:mod:`feedbot.runtime`)
picks and builds one.
"""

from __future__ import annotations

from feedbot.notify.base import Attachment, Message, Notifier, Receipt

NOTIFIERS = ("console", "slack")
"""Configuration names of the notifier implementations (module names in this package)."""

__all__ = ["NOTIFIERS", "Attachment", "Message", "Notifier", "Receipt"]
