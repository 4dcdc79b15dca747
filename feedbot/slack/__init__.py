"""Slack in: the bolt ``App`` and its listeners for ``/feedback``, buttons and shortcuts.

:mod:`~feedbot.slack.app` builds the App from explicit dependencies (client, settings, sessions,
clock); :mod:`~feedbot.slack.listeners` parse, ``ack()`` within Slack's three seconds and hand
slow work to lazy listeners; :mod:`~feedbot.slack.feedback` answers ``/feedback`` from the
store. The HTTP route that serves the App is :mod:`feedbot.web.slack`; in Socket Mode
:mod:`~feedbot.slack.socket_mode` connects out to Slack instead and handles each request once
across replicas. Slack out (messages, threads) is :mod:`feedbot.notify.slack`.
"""
