"""Releases in: deploy events from webhooks and CI, and the code a release changed.

- :mod:`~feedbot.releases.sources` one plug-in per deploy source (generic signed JSON, GitHub,
  GitLab, Argo CD): verify and parse a request into a :class:`~feedbot.releases.event.ReleaseEvent`.
- :mod:`~feedbot.releases.event` the validated event and the changed functions
  (:class:`~feedbot.releases.event.Change`) that the analysis reads.
- :mod:`~feedbot.releases.gitdiff` and :mod:`~feedbot.releases.pysource` changed functions
  from a git range; :mod:`~feedbot.releases.owners` who hears about a release.
- :mod:`~feedbot.releases.deploy_client` the client side of ``POST /webhooks/deploy``, for
  ``feedbot notify-deploy`` and the demo.

A low layer: it imports only config and errors. Registering a release in the store is
:mod:`feedbot.checks.register`.
"""
