"""The HTTP adapter: a FastAPI app that parses, authenticates, hands over and answers.

- :mod:`~feedbot.web.app` :func:`~feedbot.web.app.create_app` and the deploy webhooks, health
  and metrics routes.
- :mod:`~feedbot.web.slack` ``POST /slack/events`` (signature first, then bolt).
- :mod:`~feedbot.web.otlp` ``POST /v1/traces`` for the embedded trace store.
- :mod:`~feedbot.web.body` body size and time limits; :mod:`~feedbot.web.observe` request
  metrics and traces; :mod:`~feedbot.web.schema` the OpenAPI descriptions.

The work behind each route lives below (:mod:`feedbot.checks.register`, :mod:`feedbot.slack`,
:mod:`feedbot.backends.embedded`); the app gets everything from a
:class:`~feedbot.runtime.Runtime`.
"""
