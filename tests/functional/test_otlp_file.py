"""The otlp-file backend over files like the Collector's file exporter writes, from SDK spans."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import encode_spans
from sqlalchemy.orm import Session, sessionmaker

from feedbot.backends import build_backend
from feedbot.backends.base import TraceBackend
from feedbot.backends.otlp_file import OtlpFileBackend, read_rows
from feedbot.errors import BackendResponseError, BackendUnavailable, ConfigError
from tests.conftest import FIXTURES
from tests.factories import settings
from tests.fakes.sdk_spans import T0, json_line, ns, query, release_spans

FIXTURE = FIXTURES / "otlp" / "trace.json"


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    """Two versions' spans: one batch a line, over a plain file and a gzip-compressed one."""
    old, new = release_spans("vault", "1.0.0"), release_spans("vault", "1.1.0", old=True)
    (tmp_path / "traces-1.jsonl").write_text(f"{json_line(old[:10])}\n{json_line(new[:10])}\n")
    with gzip.open(tmp_path / "traces-2.jsonl.gz", "wt") as out:
        out.write(f"{json_line(old[10:])}\n\n{json_line(new[10:])}\n")
    return tmp_path


def test_plain_and_gzip_files_of_two_versions(exports: Path) -> None:
    backend = OtlpFileBackend([str(exports / "traces-*")])

    assert backend.name == "otlp-file"
    assert [Path(p).name for p in backend.files()] == ["traces-1.jsonl", "traces-2.jsonl.gz"]
    for version in ("1.0.0", "1.1.0"):
        data = backend.collect(query("vault", version))
        assert [(g.name, g.count, g.errors) for g in data.groups] == [
            ("SELECT items", 18, 0),
            ("GET /orders/{id}", 6, 2),
            ("appraise", 6, 2),
            ("process order", 2, 0),
        ]
        assert data.traces == 8
        np.testing.assert_allclose(np.sort(data.groups[3].durations_ms), [3.0, 3.0])
        assert [r.repeats.tolist() for r in data.repeats] == [[3] * 6]


def test_comma_separated_globs_through_the_registry(exports: Path, tmp_path: Path) -> None:
    path = f"{exports / 'traces-1.jsonl'}, {exports / '*.gz'}"
    backend = build_backend(settings(traces={"backend": "otlp-file", "path": path}), sessionmaker())

    assert isinstance(backend, OtlpFileBackend)
    assert len(backend.files()) == 2
    assert sum(g.count for g in backend.collect(query("vault", "1.0.0")).groups) == 32


def test_registry_builds_every_backend_and_needs_a_path_for_files() -> None:
    sessions: sessionmaker[Session] = sessionmaker()
    with pytest.raises(ConfigError, match="traces.path: is required"):
        build_backend(settings(traces={"backend": "otlp-file"}), sessions)
    for name in ("tempo", "jaeger", "zipkin", "clickhouse"):
        backend = build_backend(settings(traces={"backend": name, "url": "http://x:1"}), sessions)
        assert isinstance(backend, TraceBackend) and backend.name == name


def test_the_otlp_example_document_is_read_by_path() -> None:
    (row,) = read_rows(str(FIXTURE))
    assert (row["service"], row["name"], row["kind"]) == (
        "my.service",
        "I'm a server span",
        "SERVER",
    )
    assert row["duration_ns"] == 1_000_000_000
    # The example has no service.version, so it belongs to no release.
    assert OtlpFileBackend([str(FIXTURE)]).collect(query("my.service", "1.0.0")).groups == []


def test_a_pretty_printed_gzip_document(tmp_path: Path) -> None:
    text = json_format.MessageToJson(encode_spans(release_spans("vault", "2.0.0")))
    with gzip.open(tmp_path / "export.json.gz", "wt") as out:
        out.write(text)
    assert text.count("\n") > 100

    data = OtlpFileBackend([str(tmp_path / "*.gz")]).collect(query("vault", "2.0.0"))
    assert sum(g.count for g in data.groups) == 32


def test_a_malformed_line_names_the_file_and_line(exports: Path) -> None:
    target = exports / "traces-1.jsonl"
    resource = {
        "attributes": [
            {"key": "service.name", "value": {"stringValue": "vault"}},
            {"key": "service.version", "value": {"stringValue": "1.0.0"}},
        ]
    }
    start = str(ns(T0))
    with target.open("a") as out:
        bad = [{"traceId": "xyz", "name": "work", "startTimeUnixNano": start}]
        block = {"resource": resource, "scopeSpans": [{"spans": bad}]}
        out.write(json.dumps({"resourceSpans": [block]}) + "\n")
    with pytest.raises(BackendResponseError) as caught:
        OtlpFileBackend([str(target)]).collect(query("vault", "1.0.0"))
    assert str(caught.value) == (
        f"otlp-file: {target}, line 3: "
        "resourceSpans[0].scopeSpans[0].spans[0].traceId: expected 32 hex characters"
    )

    with target.open("w") as out:
        out.write(f"{json_line(release_spans('vault', '1.0.0'))}\n")
        out.write('["vault", "1.0.0"\n{"not": "vault"\n["vault", "1.0.0", "being written"')
    with pytest.raises(BackendResponseError, match=r"traces-1.jsonl, line 2: not valid JSON"):
        OtlpFileBackend([str(target)]).collect(query("vault", "1.0.0"))


def test_lines_of_other_services_and_a_last_line_being_written_are_skipped(
    exports: Path,
) -> None:
    target = exports / "traces-1.jsonl"
    with target.open("a") as out:
        out.write('{"resourceSpans": "another service, broken"\n')
        out.write('{"resourceSpans": [{"vault": "1.0.0"')
    data = OtlpFileBackend([str(target)]).collect(query("vault", "1.0.0"))
    assert sum(g.count for g in data.groups) == 10


def test_a_whole_file_that_is_not_json(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{\n  nope\n")
    with pytest.raises(BackendResponseError, match="neither OTLP/JSON lines nor one JSON document"):
        OtlpFileBackend([str(tmp_path / "x.json")]).collect(query("vault", "1.0.0"))


def test_a_truncated_gzip_file(exports: Path) -> None:
    target = exports / "traces-2.jsonl.gz"
    target.write_bytes(target.read_bytes()[:-40])
    with pytest.raises(BackendResponseError, match=r"traces-2.jsonl.gz: cannot be read"):
        OtlpFileBackend([str(target)]).collect(query("vault", "1.0.0"))


def test_missing_files_name_the_glob(tmp_path: Path) -> None:
    pattern = str(tmp_path / "nothing-*.jsonl")
    with pytest.raises(BackendUnavailable) as caught:
        OtlpFileBackend([pattern]).collect(query("vault", "1.0.0"))
    assert str(caught.value) == f"otlp-file: no file matches traces.path {pattern!r}"


def test_files_are_expanded_at_each_collect(exports: Path, tmp_path: Path) -> None:
    later = tmp_path / "later"
    later.mkdir()
    backend = OtlpFileBackend([str(later / "*.jsonl*")])
    with pytest.raises(BackendUnavailable):
        backend.collect(query("vault", "1.0.0"))

    shutil.copy(exports / "traces-1.jsonl", later / "rotated.jsonl")
    assert backend.collect(query("vault", "1.0.0")).groups
    assert T0.tzinfo is not None
