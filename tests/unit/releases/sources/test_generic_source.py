from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from feedbot.errors import WebhookRejected
from feedbot.releases.event import Author, Change, ReleaseEvent
from feedbot.releases.sources.base import DeploySource
from feedbot.releases.sources.generic import GenericDeploySource, parse_document

SECRET = "s3cret"

FULL = {
    "service": "vault-service",
    "version": "1.4.2",
    "environment": "staging",
    "commit": "9f2c1e0d5b7a",
    "previous_commit": "1a2b3c4d5e6f",
    "repository": "acme/vault",
    "author": {
        "email": "bill@acme.example",
        "name": "Bill",
        "github": "bill",
        "slack": "U123",
        "gitlab": "bill",
    },
    "title": "Cache vault appraisals",
    "url": "https://github.com/acme/vault/pull/42",
    "features": ["appraisal"],
    "changes": [
        {
            "file": "vault/appraisal.py",
            "functions": ["vault.appraisal.appraise"],
            "lines": [[10, 42]],
        }
    ],
    "deployed_at": "2026-11-24T11:00:00+01:00",
    "added_in_a_later_version": {"anything": True},
}


def sign(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"x-feedbot-signature": f"sha256={digest}"}


def rejected(doc: Any) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as info:
        parse_document(doc)
    assert info.value.status == 422
    return info.value


def test_is_a_deploy_source() -> None:
    source = GenericDeploySource(SECRET)
    assert isinstance(source, DeploySource)
    assert source.name == "generic"


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        GenericDeploySource("")


def test_signed_full_document_parses() -> None:
    body = json.dumps(FULL).encode()
    headers = {**sign(body), "x-feedbot-delivery": "ci-run-77"}
    source = GenericDeploySource(SECRET)
    source.verify(headers, body)
    event = source.parse(headers, body)
    assert event == ReleaseEvent(
        service="vault-service",
        version="1.4.2",
        environment="staging",
        commit="9f2c1e0d5b7a",
        previous_commit="1a2b3c4d5e6f",
        repository="acme/vault",
        author=Author(
            email="bill@acme.example", name="Bill", github="bill", gitlab="bill", slack="U123"
        ),
        title="Cache vault appraisals",
        url="https://github.com/acme/vault/pull/42",
        features=("appraisal",),
        changes=(Change("vault/appraisal.py", ("vault.appraisal.appraise",), ((10, 42),)),),
        deployed_at=datetime(2026, 11, 24, 10, 0, tzinfo=UTC),
        source="generic",
        delivery_id="ci-run-77",
    )
    assert event.deployed_at is not None and event.deployed_at.tzinfo is UTC


def test_minimal_document_gets_defaults() -> None:
    event = parse_document({"service": " vault-service ", "version": "1.4.2\n"})
    assert (event.service, event.version) == ("vault-service", "1.4.2")
    assert event.environment == "production"
    assert event.commit == ""
    assert event.author == Author()
    assert (event.features, event.changes, event.deployed_at, event.delivery_id) == (
        (),
        (),
        None,
        None,
    )


def test_nulls_and_blank_optionals_count_as_absent() -> None:
    event = parse_document(
        {"service": "s", "version": "v", "environment": "  ", "title": None, "author": None}
    )
    assert event.environment == "production"
    assert event.title is None


def test_parse_document_records_source_and_delivery() -> None:
    event = parse_document({"service": "s", "version": "v"}, source="cli", delivery_id="abc")
    assert (event.source, event.delivery_id) == ("cli", "abc")


def test_missing_signature_is_401() -> None:
    with pytest.raises(WebhookRejected) as info:
        GenericDeploySource(SECRET).verify({}, b"{}")
    assert info.value.status == 401
    assert info.value.message == "X-Feedbot-Signature: missing"


@pytest.mark.parametrize(
    "header",
    [
        "sha256=" + "0" * 64,
        "sha1=abc",
        "garbage",
        "sha256=ünïcode",
    ],
)
def test_wrong_signature_is_401(header: str) -> None:
    with pytest.raises(WebhookRejected) as info:
        GenericDeploySource(SECRET).verify({"x-feedbot-signature": header}, b"{}")
    assert info.value.status == 401
    assert "X-Feedbot-Signature" in info.value.message


def test_signature_with_another_secret_is_401() -> None:
    body = b'{"service": "s", "version": "v"}'
    with pytest.raises(WebhookRejected) as info:
        GenericDeploySource(SECRET).verify(sign(body, "other"), body)
    assert info.value.status == 401


def test_signature_over_a_changed_body_is_401() -> None:
    headers = sign(b'{"service": "s", "version": "v"}')
    with pytest.raises(WebhookRejected):
        GenericDeploySource(SECRET).verify(headers, b'{"service": "s", "version": "w"}')


def test_upper_case_hex_signature_is_accepted() -> None:
    body = b"{}"
    headers = {"x-feedbot-signature": sign(body)["x-feedbot-signature"].upper()}
    headers["x-feedbot-signature"] = "sha256=" + headers["x-feedbot-signature"][7:]
    GenericDeploySource(SECRET).verify(headers, body)


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b"\xff\xfe\x00", b"[" * 100_000])
def test_unreadable_body_is_400(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as info:
        GenericDeploySource(SECRET).parse({}, body)
    assert info.value.status == 400
    assert info.value.message.startswith("body: not valid JSON (")


@pytest.mark.parametrize("doc", [[], "text", 3, None, True])
def test_body_that_is_not_an_object_is_422(doc: Any) -> None:
    assert rejected(doc).message.startswith("body: expected a JSON object")


def test_oversized_delivery_header_is_400() -> None:
    body = b'{"service": "s", "version": "v"}'
    with pytest.raises(WebhookRejected) as info:
        GenericDeploySource(SECRET).parse({"x-feedbot-delivery": "x" * 201}, body)
    assert info.value.status == 400
    assert info.value.message.startswith("X-Feedbot-Delivery:")


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"service": None}, "service: is required"),
        ({"version": None}, "version: is required"),
        ({"version": "   "}, "version: must not be empty"),
        ({"service": 7}, "service: expected a string"),
        ({"service": "s" * 201}, "service: expected at most 200 characters"),
        ({"version": "v" * 201}, "version: expected at most 200 characters"),
        ({"environment": ["prod"]}, "environment: expected a string"),
        ({"commit": 123}, "commit: expected a string"),
        # The store's columns are narrower than other names: refused here, not by PostgreSQL.
        ({"commit": "c" * 65}, "commit: expected at most 64 characters"),
        ({"previous_commit": "c" * 65}, "previous_commit: expected at most 64 characters"),
        ({"environment": "e" * 101}, "environment: expected at most 100 characters"),
        ({"author": {"slack": "U" * 101}}, "author.slack: expected at most 100 characters"),
        ({"title": "t" * 501}, "title: expected at most 500 characters"),
        ({"url": "ftp://x"}, "url: expected an http(s) URL"),
        ({"url": "javascript:alert(1)"}, "url: expected an http(s) URL"),
        ({"author": "bill"}, "author: expected an object"),
        ({"author": {"email": 5}}, "author.email: expected a string"),
        ({"author": {"slack": ""}}, None),
        ({"features": "appraisal"}, "features: expected a list"),
        ({"features": ["ok", 1]}, "features[1]: expected a string"),
        ({"features": [""]}, "features[0]: must not be empty"),
        ({"features": ["f"] * 101}, "features: expected at most 100 items"),
        ({"changes": {}}, "changes: expected a list"),
        ({"changes": ["a.py"]}, "changes[0]: expected an object"),
        ({"changes": [{}]}, "changes[0]: expected at least one of file, functions, lines"),
        ({"changes": [{"file": 1}]}, "changes[0].file: expected a string"),
        ({"changes": [{"functions": "f"}]}, "changes[0].functions: expected a list"),
        ({"changes": [{"functions": [None]}]}, "changes[0].functions[0]: is required"),
        ({"changes": [{"lines": "1-2"}]}, "changes[0].lines: expected a list"),
        ({"changes": [{"functions": ["f"], "traced": "f"}]}, "changes[0].traced: expected a list"),
        (
            {"changes": [{"functions": ["f"], "traced": [1]}]},
            "changes[0].traced[0]: expected a string",
        ),
        (
            {"changes": [{"file": "a.py", "traced": ["f"]}]},
            "changes[0].traced[0]: 'f' is not one of this change's functions",
        ),
        ({"deployed_at": "yesterday"}, "deployed_at: not an RFC 3339 time with a zone"),
        ({"deployed_at": "2026-11-24T10:00:00"}, "deployed_at: not an RFC 3339 time with a zone"),
        ({"deployed_at": "2026-11-24"}, "deployed_at: not an RFC 3339 time with a zone"),
        ({"deployed_at": "2026-13-24T10:00:00Z"}, "deployed_at: not an RFC 3339 time with a zone"),
        ({"deployed_at": 1732442400}, "deployed_at: expected a string"),
    ],
)
def test_each_bad_field_is_422_naming_it(patch: dict[str, Any], expected: str | None) -> None:
    doc = {**FULL, **patch}
    if expected is None:
        parse_document(doc)
        return
    assert rejected(doc).message == expected


def test_traced_functions_are_read_and_must_be_among_the_changes_functions() -> None:
    change = {"file": "v.py", "functions": ["v.a", "v.b"], "traced": ["v.b", "v.b"]}
    event = parse_document({**FULL, "changes": [change]})
    assert event.changes[0].traced == ("v.b",)
    assert parse_document({**FULL}).changes[0].traced == ()
    bad = {**change, "traced": ["v.a", "v.c", "v.b", "v.d"]}
    assert rejected({**FULL, "changes": [{"file": "x.py"}, bad]}).message == (
        "changes[1].traced[1]: 'v.c' is not one of this change's functions; "
        "changes[1].traced[3]: 'v.d' is not one of this change's functions"
    )


@pytest.mark.parametrize(
    "lines",
    [[1], [0, 5], [5, 4], [1, 2, 3], ["1", "2"], [1.0, 2.0], [True, 2], "10-42", None],
)
def test_bad_line_range_is_422_naming_its_index(lines: Any) -> None:
    doc = {**FULL, "changes": [{"file": "a.py"}, {"file": "b.py", "lines": [[1, 1], lines]}]}
    assert rejected(doc).message == (
        "changes[1].lines[1]: expected [start, end] with 1 <= start <= end"
    )


def test_every_problem_is_reported_at_once() -> None:
    doc = {"version": "", "author": {"email": []}, "deployed_at": "now", "features": [3]}
    message = rejected(doc).message
    assert message.split("; ") == [
        "service: is required",
        "version: must not be empty",
        "author.email: expected a string",
        "features[0]: expected a string",
        "deployed_at: not an RFC 3339 time with a zone",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-24T10:00:00Z", datetime(2026, 11, 24, 10, tzinfo=UTC)),
        ("2026-11-24t10:00:00z", datetime(2026, 11, 24, 10, tzinfo=UTC)),
        ("2026-11-24 12:30:00+02:30", datetime(2026, 11, 24, 10, tzinfo=UTC)),
        ("2026-11-24T10:00:00.250-00:00", datetime(2026, 11, 24, 10, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_deployed_at_becomes_aware_utc(text: str, expected: datetime) -> None:
    event = parse_document({"service": "s", "version": "v", "deployed_at": text})
    assert event.deployed_at == expected
    assert event.deployed_at is not None and event.deployed_at.utcoffset() == expected.utcoffset()


def test_the_caps_of_narrow_fields_are_the_store_s_column_lengths() -> None:
    """Whatever a source accepts fits its column (a longer value was a 500 on PostgreSQL)."""
    from feedbot.releases.sources import _common
    from feedbot.store.models import Release

    columns = Release.__table__.columns
    assert columns["environment"].type.length == _common.ENVIRONMENT_MAX
    assert columns["commit"].type.length == _common.COMMIT_MAX
    assert columns["previous_commit"].type.length == _common.COMMIT_MAX
    for handle in ("author_github", "author_gitlab", "author_slack"):
        assert columns[handle].type.length == _common.HANDLE_MAX
    for name in ("service", "version", "author_name"):
        assert columns[name].type.length >= _common.NAME_MAX
