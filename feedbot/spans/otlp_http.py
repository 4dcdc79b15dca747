"""An OTLP/HTTP trace export as received: content type and encoding, then the right decoder.

``POST /v1/traces`` and the backends that receive OTLP (Jaeger's api_v3, Tempo, ClickHouse's
exporter rows) hand their bodies here; :mod:`feedbot.spans.otlp` decodes protobuf and
:mod:`feedbot.spans.otlp_json` JSON, both into :class:`~feedbot.spans.rows.SpanRow`.
"""

from __future__ import annotations

from feedbot.errors import WebhookRejected
from feedbot.spans.otlp import (
    JSON,
    PROTOBUF,
    decode_protobuf,
    decode_protobuf_columns,
    decompress,
    media_type,
)
from feedbot.spans.otlp_json import decode_json
from feedbot.spans.rows import Columns, SpanRow, columns_of


def decode_request(
    body: bytes,
    *,
    content_type: str,
    content_encoding: str | None,
    max_bytes: int,
    max_spans: int | None = None,
) -> list[SpanRow]:
    """Decode an OTLP/HTTP trace export into span rows.

    Args:
        body: the request body as received.
        content_type: the ``Content-Type`` header; parameters such as ``charset`` are ignored.
        content_encoding: the ``Content-Encoding`` header: ``gzip``, ``identity`` or absent.
        max_bytes: the largest body accepted after decompression.
        max_spans: the most spans accepted, counted before rows are built; None for no limit.

    Returns:
        One row per span, in payload order.

    Raises:
        WebhookRejected: 415 for an unsupported type or encoding, 413 when the decompressed body
            is too large, has too many gzip members or more than ``max_spans`` spans, 400 when
            the body cannot be decoded, naming the field.
    """
    media, data = _media_and_data(body, content_type, content_encoding, max_bytes)
    if media == PROTOBUF:
        return decode_protobuf(data, max_spans=max_spans)
    return decode_json(data, max_spans=max_spans)


def decode_request_columns(
    body: bytes,
    *,
    content_type: str,
    content_encoding: str | None,
    max_bytes: int,
    max_spans: int | None = None,
) -> Columns:
    """:func:`decode_request`'s rows as columns (protobuf is decoded into columns directly,
    no dict built per span); the same checks and errors."""
    media, data = _media_and_data(body, content_type, content_encoding, max_bytes)
    if media == PROTOBUF:
        return decode_protobuf_columns(data, max_spans=max_spans)
    return columns_of(decode_json(data, max_spans=max_spans))


def _media_and_data(
    body: bytes, content_type: str, content_encoding: str | None, max_bytes: int
) -> tuple[str, bytes]:
    media = media_type(content_type)
    if media not in (PROTOBUF, JSON):
        raise WebhookRejected(
            415, f"Content-Type: {media or '(none)'} is not supported; send {PROTOBUF} or {JSON}"
        )
    return media, decompress(body, content_encoding, max_bytes)
