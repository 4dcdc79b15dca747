"""The analysis: does the new version behave like the previous one? Pure: no I/O.

It takes two :class:`~feedbot.spans.model.ReleaseData` (the candidate and the baseline), the
functions the release changed and the detection policy (:mod:`feedbot.policy`), and returns an
:class:`~feedbot.analysis.compare.Analysis`: a verdict, per-group numbers and findings, each
with its evidence (test, n, p/q, CI).

- :mod:`~feedbot.analysis.compare` runs one look: pairs the groups, calls the detectors.
- :mod:`~feedbot.analysis.detectors` (latency, tail, errors, new exception types),
  :mod:`~feedbot.analysis.insights` (N+1, bottlenecks), :mod:`~feedbot.analysis.reach` (did the
  changed code run) and :mod:`~feedbot.analysis.look` (confirmation over the scheduled looks).
- :mod:`~feedbot.analysis.findings` the finding type; :mod:`~feedbot.analysis.report` the
  report as JSON and text.
- :mod:`~feedbot.analysis.stats`: the numpy statistics (rank tests, quantiles, counts, host
  spread, power, multiplicity), one module each.

It imports :mod:`feedbot.spans.model`, :mod:`feedbot.releases.event`, :mod:`feedbot.config` and
:mod:`feedbot.policy`; import-linter forbids it the database, HTTP and Slack.
"""
