"""Spans: decoding OpenTelemetry traces and aggregating them into what the analysis reads.

What lives here, whatever store the spans came from:

- OTLP decoding: protobuf and JSON exports into span rows (:mod:`~feedbot.spans.otlp`,
  :mod:`~feedbot.spans.otlp_json`); OTLP/JSON lines files read a document at a time
  (:mod:`~feedbot.spans.otlp_lines`), straight into the aggregator
  (:mod:`~feedbot.spans.otlp_scan`), as Arrow columns (:mod:`~feedbot.spans.otlp_arrow`) or on
  several processes (:mod:`~feedbot.spans.otlp_parallel`), gathered per version by
  :mod:`~feedbot.spans.otlp_survey`.
- Span rows and columns: :class:`~feedbot.spans.rows.SpanRow` and the column widths
  (:mod:`~feedbot.spans.rows`); a block's columns (:mod:`~feedbot.spans.columns`).
- Aggregation into :class:`~feedbot.spans.model.ReleaseData`, a span or a block at a time
  (:mod:`~feedbot.spans.aggregate`, :mod:`~feedbot.spans.aggregate_columns`,
  :mod:`~feedbot.spans.group`); the data types the analysis shares (:mod:`~feedbot.spans.model`).
- Semantic conventions, both generations (:mod:`~feedbot.spans.semconv`).

Everything is pure but the file readers. Of feedbot, this package imports only
:mod:`feedbot.errors` (it may also use :mod:`feedbot.config` and :mod:`feedbot.clock`); never
:mod:`feedbot.backends` or :mod:`feedbot.store`, which import it.
"""
