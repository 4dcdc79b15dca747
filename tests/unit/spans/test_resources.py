"""Group names of DB and HTTP spans: statements, database names, templated paths, the cap."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from feedbot.spans.aggregate import MAX_RESOURCE_GROUPS, Aggregator, group_label
from feedbot.spans.resources import resource_of, short_statement, template_path
from feedbot.spans.rows import SpanRow

_SPAN_IDS = itertools.count(1)


def row(name: str, kind: str = "CLIENT", **attributes: Any) -> SpanRow:
    return SpanRow(
        trace_id="ab" * 16,
        span_id=f"{next(_SPAN_IDS):016x}",  # one span each: the same ids twice count once
        parent_span_id=None,
        service="vault",
        version="1",
        environment=None,
        instance=None,
        name=name,
        kind=kind,
        route=attributes.get("http.route"),
        method=attributes.get("http.method"),
        start_ns=0,
        duration_ns=1000,
        is_error=False,
        attributes=attributes,
        events=[],
    )


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/clients/8f3a9c1e77d2/orders/42?page=2", "/clients/{id}/orders/{id}"),
        ("/items/123e4567-e89b-12d3-a456-426614174000", "/items/{id}"),
        ("/v1/users/me#top", "/v1/users/me"),
        ("/oauth2/token/dGhpcyBpcyBhIHRva2VuMTIz", "/oauth2/token/{id}"),
        ("/files/report.pdf", "/files/report.pdf"),
        ("/", "/"),
    ],
)
def test_ids_numbers_uuids_and_hashes_become_parameters(path: str, template: str) -> None:
    assert template_path(path) == template


def test_a_sqlite_span_is_named_by_file_and_statement_not_its_temporary_path() -> None:
    span = row(
        "SELECT /tmp/pytest-3/vault.db",
        **{
            "db.name": "/tmp/pytest-3/vault.db",
            "db.statement": "SELECT id, name FROM a WHERE id = 7",
        },
    )
    assert group_label(span) == "vault.db: SELECT … FROM a WHERE id = ?"


def test_long_statements_are_cut_and_single_columns_kept() -> None:
    assert short_statement("SELECT count(*) FROM t") == "SELECT count(*) FROM t"
    long = short_statement("UPDATE t SET " + ", ".join(f"c{i} = ?" for i in range(40)))
    assert len(long) == 120 and long.endswith("…")


def test_routed_server_spans_keep_their_route_and_others_their_name() -> None:
    routed = row("GET /a/{id}", "SERVER", **{"http.route": "/a/{id}", "http.method": "GET"})
    assert group_label(routed) == "GET /a/{id}"
    assert group_label(row("render", "INTERNAL", **{"url.path": "/a/1"})) == "render"
    assert resource_of("GET", "SERVER", None, {"url.path": "/a/1"}, None) is None
    assert group_label(row("GET /clients/8f3a9c1e77d2", "SERVER")) == "GET /clients/{id}"


def test_a_client_path_keeps_its_host_name_without_the_port() -> None:
    span = row("GET", **{"http.method": "GET", "url.full": "http://h:port/a/12"})
    assert group_label(span) == "GET h/a/{id}"
    span = row("GET", **{"http.method": "GET", "url.full": "http://rates.svc:8080/a/12"})
    assert group_label(span) == "GET rates.svc/a/{id}"


@pytest.mark.parametrize("host", ["10.0.3.7:41007", "127.0.0.1", "[::1]:8080", "[fe80::1]"])
def test_a_host_given_as_an_address_is_written_ip_so_versions_meet(host: str) -> None:
    # Each version's pods have their own addresses and ports: the group must not carry them.
    span = row("GET", **{"http.method": "GET", "url.full": f"http://{host}/rates/42"})
    assert group_label(span) == "GET {ip}/rates/{id}"


def test_past_the_cap_paths_share_one_group_and_the_notes_say_so() -> None:
    aggregator = Aggregator()
    for number in range(MAX_RESOURCE_GROUPS + 5):
        aggregator.add(row("GET", "SERVER", **{"http.method": "GET", "url.path": f"/p{number}x"}))
    data = aggregator.result()
    assert len(data.groups) == MAX_RESOURCE_GROUPS + 1
    other = next(g for g in data.groups if g.name == "GET (other paths)")
    assert other.count == 5
    assert any("5 more are counted" in note for note in data.notes)


def test_the_asgi_instrumentations_event_spans_of_a_raw_path_share_the_templated_path() -> None:
    # OpenTelemetryMiddleware on an app without routes names its SERVER span "GET <raw path>"
    # and one INTERNAL span per ASGI event after it: one group per id unless templated.
    for cover in (
        "0000a1b2c3d4e5f60718293a4b5c6d7e8f901234",
        "00000000009e0000000000000000000000131782",
    ):
        for event in ("http send", "http receive"):
            name = f"GET /covers/{cover}.jpg {event}"
            assert group_label(row(name, "INTERNAL")) == f"GET /covers/{{id}} {event}"
    assert group_label(row("GET /books/{book_id} http send", "INTERNAL")) == (
        "GET /books/{book_id} http send"
    )
    assert group_label(row("render /a/1 template", "INTERNAL")) == "render /a/1 template"
    assert group_label(row("GET /a/1 http send", "CONSUMER")) == "GET /a/1 http send"


def test_past_the_cap_asgi_event_spans_share_a_group_of_their_own_event() -> None:
    aggregator = Aggregator()
    for number in range(MAX_RESOURCE_GROUPS + 3):
        aggregator.add(row(f"GET /p{number}x http send", "INTERNAL"))
    data = aggregator.result()
    other = next(g for g in data.groups if g.name == "GET (other paths) http send")
    assert other.count == 3 and other.kind == "INTERNAL"
    assert any("3 more are counted" in note for note in data.notes)
