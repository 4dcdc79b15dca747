"""The otlp-file backend over files like the Collector's file exporter writes, from SDK spans."""

from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import encode_spans
from sqlalchemy.orm import Session, sessionmaker

from feedbot.backends import build_backend
from feedbot.backends.base import TraceBackend
from feedbot.backends.otlp_file import OtlpFileBackend
from feedbot.errors import BackendResponseError, BackendUnavailable, ConfigError
from feedbot.spans import otlp_parallel
from feedbot.spans.model import ReleaseData
from feedbot.spans.otlp_lines import Part, _line_base, _texts, read_rows
from tests.factories import settings
from tests.fakes.sdk_spans import T0, json_line, ns, query, release_spans


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
            ("SELECT * FROM items WHERE id = ?", 18, 0),  # DB spans: by statement
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


def test_the_otlp_example_document_is_read_by_path(fixtures_dir: Path) -> None:
    example = fixtures_dir / "otlp" / "trace.json"
    (row,) = read_rows(str(example))
    assert (row["service"], row["name"], row["kind"]) == (
        "my.service",
        "I'm a server span",
        "SERVER",
    )
    assert row["duration_ns"] == 1_000_000_000
    # The example has no service.version, so it belongs to no release.
    assert OtlpFileBackend([str(example)]).collect(query("my.service", "1.0.0")).groups == []


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


@pytest.fixture
def many_lines(tmp_path: Path) -> Path:
    """Two versions, a few spans a line (traces cut across lines), blank lines, other services."""
    old, new = release_spans("vault", "1.0.0"), release_spans("vault", "1.1.0", old=True)
    other = release_spans("ledger", "1.0.0")
    lines = []
    for i in range(0, max(len(old), len(new)), 3):
        lines += [json_line(old[i : i + 3]), json_line(new[i : i + 3]), "", json_line(other[:2])]
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _same(got: ReleaseData, want: ReleaseData) -> None:
    assert got.groups == want.groups and got.repeats == want.repeats
    assert got.traces == want.traces and want.traces > 0
    for mine, theirs in zip(got.groups, want.groups, strict=True):
        assert mine.durations_ms.tolist() == theirs.durations_ms.tolist()
        assert mine.instances.tolist() == theirs.instances.tolist()
    for mine_r, theirs_r in zip(got.repeats, want.repeats, strict=True):
        assert sorted(mine_r.repeats.tolist()) == sorted(theirs_r.repeats.tolist())


@pytest.mark.parametrize("workers", [2, 3, 7])
def test_reading_in_parts_on_several_processes_gives_the_same_answer(
    many_lines: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(otlp_parallel, "MIN_BYTES", 0)  # the file is small; split it anyway
    assert len(otlp_parallel.plan_parts([str(many_lines)], workers)) == workers
    one, parts = (
        OtlpFileBackend([str(many_lines)]),
        OtlpFileBackend([str(many_lines)], workers=workers),
    )
    for version in ("1.0.0", "1.1.0"):
        _same(parts.collect(query("vault", version)), one.collect(query("vault", version)))
    window = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert parts.versions("vault", *window) == one.versions("vault", *window)
    survey = parts.survey(query("vault", "1.1.0"), baseline=window, counted=window)
    assert dict(survey.counts) == one.versions("vault", *window, "production")
    _same(survey.result(), one.collect(query("vault", "1.1.0")))
    _same(
        survey.baseline("1.0.0"),
        one.collect(replace(query("vault", "1.0.0"), start=window[0], end=window[1])),
    )


def test_the_byte_ranges_start_and_end_on_line_boundaries(many_lines: Path) -> None:
    size = many_lines.stat().st_size
    parts = [Part(str(many_lines), 0, size // 3), Part(str(many_lines), size // 3, None)]
    numbers = [n for part in parts for n, _ in _texts(part, ())]
    lines = [n for n, line in enumerate(many_lines.read_bytes().splitlines(), 1) if line.strip()]
    first = sum(1 for _ in _texts(parts[0], ()))
    assert len(numbers) == len(lines)  # each line once, none cut
    assert _line_base(parts[1]) + numbers[first] == lines[first]


def test_a_malformed_line_in_a_later_part_names_the_files_line(
    many_lines: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(otlp_parallel, "MIN_BYTES", 0)
    text = many_lines.read_text().splitlines()
    bad = len(text) - 3  # a line of 1.0.0's spans, in the second half
    assert '"1.0.0"' in text[bad - 1]
    text[bad - 1] = text[bad - 1].replace('"traceId":"', '"traceId":"xyz', 1)
    many_lines.write_text("\n".join(text) + "\n")
    with pytest.raises(BackendResponseError, match=rf"traces.jsonl, line {bad}: .*traceId"):
        OtlpFileBackend([str(many_lines)], workers=2).collect(query("vault", "1.0.0"))
