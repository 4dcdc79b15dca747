"""The OpenAPI description of the routes that read their bodies raw; pure data, no I/O.

The webhook and Slack routes read the raw body themselves (a signature covers the exact bytes),
so FastAPI cannot infer their request bodies. These fragments, passed to the route decorators as
``openapi_extra`` and ``responses``, document what the parsers in :mod:`feedbot.releases.sources`
and bolt accept, so the published schema is honest and a schema-driven fuzzer (schemathesis, see
``tests/contract/test_openapi_fuzz.py``) can generate bodies that reach the parsers.
"""

from __future__ import annotations

from typing import Any

#: Every refusal is ``{"error": "<field>: <problem>"}``.
ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}

# A non-blank string without NUL: the parsers strip values and treat blank as absent.
_TEXT_PATTERN = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"


def _text(max_length: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, "pattern": _TEXT_PATTERN}


NAME = _text(200)
TITLE = _text(500)
PATH = _text(1000)
# Dates and times that exist on every calendar (day 29 to 31 are left out: a pattern cannot
# know the month's length).
_DATE = "[12]\\d{3}-(0[1-9]|1[0-2])-(0[1-9]|1\\d|2[0-8])"
_CLOCK = "([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d"
URL = {"type": "string", "maxLength": 2000, "pattern": "^https?://[^\\s\\u0000]+$"}
TIME = {"type": "string", "format": "date-time"}
_AUTHOR = {
    "type": "object",
    "properties": dict.fromkeys(("email", "name", "github", "gitlab", "slack"), NAME),
}
_CHANGE = {
    "type": "object",
    "minProperties": 1,
    "properties": {
        "file": PATH,
        "functions": {"type": "array", "maxItems": 20, "items": PATH},
        "lines": {
            "type": "array",
            "maxItems": 20,
            "items": {
                "type": "array",
                "minItems": 2,
                "maxItems": 2,
                "items": {"type": "integer", "minimum": 1},
                "description": "[start, end] line ranges with start <= end",
            },
        },
    },
    "anyOf": [{"required": [k]} for k in ("file", "functions", "lines")],
}
_RELEASE_FIELDS = {
    "title": TITLE,
    "url": URL,
    "previous_commit": NAME,
    "author": _AUTHOR,
    "features": {"type": "array", "maxItems": 100, "items": NAME},
    "changes": {"type": "array", "maxItems": 20, "items": _CHANGE},
}

GENERIC: dict[str, Any] = {
    "title": "Generic deploy (/webhooks/generic, /webhooks/deploy)",
    "type": "object",
    "required": ["service", "version"],
    "properties": {
        **dict.fromkeys(("service", "version", "environment", "commit", "repository"), NAME),
        **_RELEASE_FIELDS,
        "deployed_at": TIME,
    },
}
_USER = {"type": "object", "properties": {"login": NAME, "type": {"type": "string"}}}
GITHUB: dict[str, Any] = {
    "title": "GitHub deployment_status (/webhooks/github)",
    "type": "object",
    "required": ["deployment_status", "deployment", "repository"],
    "properties": {
        "deployment_status": {
            "type": "object",
            "required": ["state"],
            "properties": {
                "state": {"enum": ["success", "pending", "in_progress", "failure", "error"]},
                "target_url": URL,
                "log_url": URL,
                "created_at": TIME,
                "updated_at": TIME,
            },
        },
        "deployment": {
            "type": "object",
            "required": ["sha"],
            "properties": {
                "sha": NAME,
                "environment": NAME,
                "description": TITLE,
                "creator": _USER,
                "payload": {
                    "type": "object",
                    "properties": {"service": NAME, "version": NAME, **_RELEASE_FIELDS},
                },
            },
        },
        "repository": {
            "type": "object",
            "required": ["full_name"],
            "properties": {"full_name": {**NAME, "pattern": "^[^/\\s\\u0000]+/[^/\\s\\u0000]+$"}},
        },
        "sender": _USER,
    },
}
_SHA = {"type": "string", "pattern": "^[0-9a-f]{40}$"}
GITHUB_PULL_REQUEST: dict[str, Any] = {
    "title": "GitHub pull_request (/webhooks/github, X-GitHub-Event: pull_request)",
    "description": "opened, synchronize and reopened ask for a preview; other actions are ignored",
    "type": "object",
    "required": ["action", "number", "pull_request", "repository"],
    "properties": {
        "action": {"type": "string"},
        "number": {"type": "integer", "minimum": 1},
        "pull_request": {
            "type": "object",
            "required": ["head", "base"],
            "properties": {
                "html_url": URL,
                "head": {"type": "object", "required": ["sha"], "properties": {"sha": _SHA}},
                "base": {"type": "object", "required": ["sha"], "properties": {"sha": _SHA}},
                "user": _USER,
            },
        },
        "repository": GITHUB["properties"]["repository"],
    },
}
GITLAB: dict[str, Any] = {
    "title": "GitLab Deployment Hook (/webhooks/gitlab)",
    "type": "object",
    "required": ["object_kind", "status", "sha", "project"],
    "properties": {
        "object_kind": {"const": "deployment"},
        "status": {"enum": ["success", "created", "running", "failed", "canceled"]},
        "deployment_id": {"type": "integer", "minimum": 1},
        **dict.fromkeys(("sha", "short_sha", "environment"), NAME),
        "project": {
            "type": "object",
            "required": ["path"],
            "properties": {"path": NAME, "path_with_namespace": NAME},
        },
        "user": {
            "type": "object",
            "properties": dict.fromkeys(("name", "username", "email"), NAME),
        },
        "commit_title": TITLE,
        "commit_url": URL,
        "status_changed_at": {
            "type": "string",
            "pattern": f"^{_DATE} {_CLOCK} (UTC|[+-](0\\d|1[0-4])[0-5]\\d)$",
        },
    },
}
ARGOCD: dict[str, Any] = {
    "title": "Argo CD Notifications, feedbot-deployed template (/webhooks/argocd)",
    "type": "object",
    "required": ["app", "revision"],
    "properties": {
        **dict.fromkeys(("app", "revision", "service", "version", "environment"), NAME),
        "images": {"type": "array", "maxItems": 100, "items": PATH},
        "url": URL,
        "deployed_at": TIME,
    },
}


def _header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    reasons = {
        400: "The request cannot be read (not JSON, a required header missing)",
        401: "The signature or token is missing or wrong",
        404: "No such deploy source",
        408: "The body did not arrive within server.request_timeout",
        413: "The body is over the endpoint's limit",
        415: "Unsupported Content-Type or Content-Encoding",
        422: "The document is readable but fields are wrong; each named as path: problem",
    }
    return {status: _json(ERROR, reasons[status]) for status in statuses}


WEBHOOK_OPENAPI: dict[str, Any] = {
    "description": (
        "A deploy webhook in one of four dialects, chosen by the path: ``generic`` (alias "
        "``deploy``, HMAC-SHA256 in X-Feedbot-Signature), ``github`` (X-Hub-Signature-256), "
        "``gitlab`` (X-Gitlab-Token) and ``argocd`` (Authorization: Bearer). The signature "
        "covers the raw body, which is why the body is read raw and described here."
    ),
    "parameters": [
        _header("X-Feedbot-Signature", "generic: sha256=<hex HMAC-SHA256 of the body>"),
        _header("X-Feedbot-Delivery", "generic: optional delivery id; a repeat is one release"),
        _header("X-Hub-Signature-256", "github: sha256=<hex HMAC-SHA256 of the body>"),
        _header(
            "X-GitHub-Event",
            "github: deployment_status is a release; pull_request asks for a preview",
        ),
        _header("X-GitHub-Delivery", "github: the delivery GUID (required)"),
        _header("X-Gitlab-Token", "gitlab: the webhook's secret token"),
        _header("X-Gitlab-Event", "gitlab: only 'Deployment Hook' is a release"),
        _header("X-Gitlab-Event-UUID", "gitlab: fallback delivery id"),
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"anyOf": [GENERIC, GITHUB, GITHUB_PULL_REQUEST, GITLAB, ARGOCD]}
            }
        },
    },
}
_ACCEPTED = {
    "oneOf": [
        {
            "type": "object",
            "required": ["release_id", "created", "checks"],
            "properties": {
                "release_id": {"type": "integer"},
                "created": {"type": "boolean"},
                "checks": {"type": "integer", "minimum": 0},
                "warning": {
                    "type": "string",
                    "description": "Nobody will be told about the release: what to configure.",
                },
            },
        },
        {"type": "object", "required": ["ignored"], "properties": {"ignored": {"type": "string"}}},
        {
            "type": "object",
            "description": "A pull request's preview, run after the answer",
            "required": ["preview", "pull_request", "head"],
            "properties": {
                "preview": {"const": "queued"},
                "pull_request": {"type": "integer"},
                "head": {"type": "string"},
            },
        },
    ]
}
WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: _json(_ACCEPTED, "Registered (or seen before), or ignored: not a finished deploy"),
    **_refusals(400, 401, 404, 408, 413, 422),
}
#: The path parameter's values; any other name is answered 404.
SOURCE_NAMES = ["generic", "deploy", "github", "gitlab", "argocd"]

SLACK_OPENAPI: dict[str, Any] = {
    "description": (
        "Slash commands and interactions from Slack, verified by bolt against the signing secret "
        "(X-Slack-Signature over v0:<timestamp>:<body>; older than 5 minutes is refused)."
    ),
    "parameters": [
        _header("X-Slack-Signature", "v0=<hex HMAC-SHA256 of v0:<timestamp>:<raw body>>"),
        _header("X-Slack-Request-Timestamp", "Unix seconds; more than 5 minutes off is refused"),
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "command": {"enum": ["/feedback"]},
                        "text": {"type": "string", "maxLength": 200},
                        **dict.fromkeys(("user_id", "channel_id", "team_id", "trigger_id"), NAME),
                        "response_url": URL,
                        "payload": {"type": "string", "description": "an interaction, as JSON"},
                    },
                }
            }
        },
    },
}


def _bolt(description: str) -> dict[str, Any]:
    """bolt answers an empty ``text/plain`` body, or JSON when an ack carries a message."""
    content = {"application/json": {"schema": {"type": "object"}}, "text/plain": {}}
    return {"description": description, "content": content}


SLACK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _bolt("Acknowledged; a slash command's ack may carry text"),
    400: _json(ERROR, "The body is not a form or JSON object that bolt can read"),
    401: _json(ERROR, "The signature is missing, wrong or older than 5 minutes"),
    404: _bolt("No listener for this request"),
    **_refusals(408, 413),
}
_STATUS = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
READYZ_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _json(_STATUS, "The database answers"),
    503: _json(_STATUS, "The database does not answer"),
}
METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition format",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}

_OTLP_JSON = {
    "type": "object",
    "description": "OTLP/JSON ExportTraceServiceRequest (hex ids, 64-bit integers as strings)",
    "properties": {"resourceSpans": {"type": "array", "items": {"type": "object"}}},
}
#: For ``POST /v1/traces`` (feedbot/web/otlp.py).
OTLP_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _OTLP_JSON},
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
        },
    },
}
OTLP_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "An empty ExportTraceServiceResponse in the request's format",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    **_refusals(400, 408, 413, 415),
    503: _json(ERROR, "The span store cannot take the spans now; retry after Retry-After"),
}
