from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from feedbot.config import load_settings, settings_from_mapping
from feedbot.durations import format_duration, parse_duration
from feedbot.errors import ConfigError
from feedbot.policy import DetectionPolicy, with_overrides

ROOT = Path(__file__).resolve().parents[2]


def problems(raw: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(raw, env or {})
    return info.value.problems


def test_defaults_are_the_embedded_setup() -> None:
    s = settings_from_mapping({}, {})
    assert s.database_url == "sqlite:///feedbot.db"
    assert s.server.port == 8080
    assert s.traces.backend == "embedded"
    assert s.checks.after == (
        timedelta(minutes=15),
        timedelta(hours=1),
        timedelta(hours=4),
        timedelta(days=1),
    )
    assert s.checks.baseline_window == timedelta(hours=24)
    assert s.slack.api_url == "https://slack.com/api/"


def test_example_config_passes() -> None:
    s = load_settings(ROOT / "config.example.yaml", {})
    assert "vault-service" in s.services
    assert s.features["appraisal"].service == "vault-service"
    assert s.people[0].slack == "U0123ABC"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20s", timedelta(seconds=20)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(minutes=90)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "15", "15x", "m", "1h and", "0s", "-5m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(parse_duration(t)) for t in ("15m", "1h", "4h", "24h", "90s")] == [
        "15m",
        "1h",
        "4h",
        "1d",
        "90s",
    ]


def test_unknown_keys_suggest_the_right_one() -> None:
    found = problems({"traces": {"backnd": "tempo"}, "chekcs": {}})
    assert "traces.backnd: unknown key (did you mean 'backend'?)" in found
    assert "chekcs: unknown key (did you mean 'checks'?)" in found


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        {
            "server": {"port": "eighty"},
            "checks": {"after": ["15m", "soon"], "baseline_window": 3.5},
            "traces": {"backend": "tempoo"},
            "slack": {"weekly_digest": {"cron": "every monday", "timezone": "Mars/Olympus"}},
        }
    )
    joined = "\n".join(found)
    assert "server.port: expected an integer, got a string" in joined
    assert "checks.after[1]: 'soon' is not a duration" in joined
    assert "checks.baseline_window: expected a duration like 15m, got a number" in joined
    assert "traces.backend: 'tempoo' is not one of" in joined and "did you mean 'tempo'" in joined
    assert "slack.weekly_digest.timezone: unknown time zone 'Mars/Olympus'" in joined
    assert len(found) == 5


def test_bad_cron_is_reported() -> None:
    found = problems({"slack": {"weekly_digest": {"cron": "61 9 * * mon"}}})
    assert found[0].startswith("slack.weekly_digest.cron: not a 5-field crontab")


def test_wrong_types() -> None:
    found = problems({"services": {"vault": {"owners": "U1", "channel": ["#a"]}}, "people": {}})
    assert "services.vault.channel: expected a string, got a list" in found
    assert "people: expected a list, got a mapping" in found


def test_secrets_a_configured_part_needs() -> None:
    found = problems({"slack": {"bot_token": "xoxb-1"}, "traces": {"backend": "tempo"}})
    assert any(
        p.startswith("slack.signing_secret: is required when slack.bot_token") for p in found
    )
    assert "traces.url: is required for traces.backend 'tempo'" in found
    assert "traces.path: is required for traces.backend 'otlp-file' (a glob)" in problems(
        {"traces": {"backend": "otlp-file"}}
    )


def test_environment_interpolation_and_overrides() -> None:
    raw = {
        "database_url": "${DB:-sqlite:///x.db}",
        "public_url": "https://${HOST}",
        "slack": {"bot_token": "${TOKEN}", "signing_secret": "file-secret"},
    }
    env = {"HOST": "feedbot.acme.example", "TOKEN": "xoxb-env", "SLACK_SIGNING_SECRET": "env"}
    s = settings_from_mapping(raw, env)
    assert s.database_url == "sqlite:///x.db"
    assert s.public_url == "https://feedbot.acme.example"
    assert s.slack.bot_token == "xoxb-env"
    assert s.slack.signing_secret == "env"  # the environment overrides the file


def test_missing_environment_variable_is_named() -> None:
    assert problems({"webhooks": {"secret": "${NOPE}"}}) == [
        "webhooks.secret: environment variable NOPE is not set"
    ]


def test_features_must_name_a_known_service() -> None:
    found = problems(
        {
            "services": {"vault-service": {}},
            "features": {"appraisal": {"service": "vault-servce", "spans": ["appraise"]}},
        }
    )
    assert found == [
        "features.appraisal.service: 'vault-servce' is not under services "
        "(did you mean 'vault-service'?)"
    ]


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "missing.yaml", {})
    assert "cannot read the file" in info.value.problems[0]
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: [1,\n")
    with pytest.raises(ConfigError) as info:
        load_settings(bad, {})
    assert "not valid YAML at line" in info.value.problems[0]


def test_detectors_can_be_tuned_and_switched_off_per_service() -> None:
    s = settings_from_mapping(
        {"services": {"vault": {"detectors": {"latency": {"enabled": False, "ratio_floor": 1.3}}}}},
        {},
    )
    assert s.services["vault"].detectors == {"latency": {"enabled": False, "ratio_floor": 1.3}}


def test_bad_detector_settings_name_the_key() -> None:
    found = problems(
        {
            "services": {
                "vault": {
                    "detectors": {
                        "latncy": {},
                        "n_plus_one": {"min_repeat": 3, "min_total_ms": "fast"},
                        "errors": {"enabled": "no"},
                        "code_reach": {"min_requests": 2.5},
                    }
                }
            }
        }
    )
    assert sorted(found) == [
        "services.vault.detectors.code_reach.min_requests: expected a whole number",
        "services.vault.detectors.errors.enabled: expected true or false",
        "services.vault.detectors.latncy: unknown detector (did you mean 'latency'?)",
        "services.vault.detectors.n_plus_one.min_repeat: unknown setting "
        "(did you mean 'min_repeats'?)",
        "services.vault.detectors.n_plus_one.min_total_ms: expected a number",
    ]


def test_the_before_after_correction_is_auto_on_or_off_and_still_takes_a_boolean() -> None:
    for written, held in ((False, "off"), (True, "on"), ("auto", "auto"), ("on", "on")):
        raw = {"latency": {"before_after_correction": written}}
        s = settings_from_mapping({"services": {"vault": {"detectors": raw}}}, {})
        assert s.services["vault"].detectors == raw
        policy = with_overrides(DetectionPolicy(), s.services["vault"].detectors)
        assert policy.latency.before_after_correction == held
    assert DetectionPolicy().latency.before_after_correction == "auto"
    bad = {"latency": {"before_after_correction": "sometimes"}}
    assert problems({"services": {"vault": {"detectors": bad}}}) == [
        "services.vault.detectors.latency.before_after_correction: expected auto, on or off"
    ]
    assert problems({"services": {"vault": {"detectors": {"latency": {"warmup": "auto"}}}}})


def test_telemetry_is_off_by_default_and_takes_an_otlp_http_traces_url() -> None:
    assert settings_from_mapping({}, {}).telemetry.traces_endpoint is None
    on = settings_from_mapping(
        {"telemetry": {"traces_endpoint": "http://collector:4318/v1/traces"}}, {}
    )
    assert on.telemetry.traces_endpoint == "http://collector:4318/v1/traces"
    assert on.telemetry.service_name == "feedbot"
    named = settings_from_mapping(
        {"telemetry": {"traces_endpoint": "${OTLP:-}", "service_name": "feedbot-eu"}}, {}
    )
    assert (named.telemetry.traces_endpoint, named.telemetry.service_name) == (None, "feedbot-eu")


def test_bad_telemetry_settings_name_the_key() -> None:
    assert problems({"telemetry": {"traces_endpoint": "collector:4318"}}) == [
        "telemetry.traces_endpoint: 'collector:4318' is not an http(s) URL"
    ]
    assert problems({"telemetry": {"traces_endpoint": "http://collector:4318"}}) == [
        "telemetry.traces_endpoint: 'http://collector:4318' has no path: "
        "OTLP/HTTP traces go to …/v1/traces"
    ]
    assert problems({"telemetry": {"endpoint": "http://c/v1/traces", "service_name": []}}) == [
        "telemetry.endpoint: unknown key (did you mean 'traces_endpoint'?)",
        "telemetry.service_name: expected a string, got a list",
    ]


def test_the_ingest_token_comes_from_the_file_or_the_environment_and_is_checked() -> None:
    assert settings_from_mapping({}, {}).traces.ingest_token is None
    assert settings_from_mapping({}, {}).traces.ingest_max_spans == 50_000
    from_env = settings_from_mapping({}, {"FEEDBOT_INGEST_TOKEN": "from-env-token"})
    assert from_env.traces.ingest_token == "from-env-token"
    raw = {"traces": {"ingest_token": "${MY_TOKEN:-}", "ingest_max_spans": "1000"}}
    from_file = settings_from_mapping(raw, {"MY_TOKEN": "abc.def-123"})
    assert (from_file.traces.ingest_token, from_file.traces.ingest_max_spans) == (
        "abc.def-123",
        1000,
    )
    assert settings_from_mapping(raw, {}).traces.ingest_token is None
    assert problems({"traces": {"ingest_token": "two words"}}) == [
        "traces.ingest_token: must be printable ASCII without spaces"
    ]
    assert problems({"traces": {"ingest_max_spans": 0}}) == [
        "traces.ingest_max_spans: must be at least 1, got 0"
    ]


@pytest.mark.parametrize("zero", ["0", "0s", "0M", " 0h ", 0])
def test_a_detector_duration_of_zero_may_carry_its_unit(zero: object) -> None:
    from feedbot.policy import duration

    assert duration(zero) == timedelta(0)
    with pytest.raises(ValueError, match="longer than zero|duration"):
        duration("0d")


def test_socket_mode_needs_the_bot_token_and_no_signing_secret() -> None:
    env = {"SLACK_APP_TOKEN": "xapp-1-A1-1-abc"}
    assert problems({}, env) == [
        "slack.bot_token: is required when slack.app_token is set (set SLACK_BOT_TOKEN)"
    ]
    settings = settings_from_mapping({}, {**env, "SLACK_BOT_TOKEN": "xoxb-1"})
    assert (settings.slack.app_token, settings.slack.signing_secret) == ("xapp-1-A1-1-abc", None)
    assert problems({"slack": {"app_token": "xoxb-2", "bot_token": "xoxb-1"}}) == [
        "slack.app_token: expected an app-level token (xapp-…), not a bot or user token"
    ]


def test_app_level_tokens_are_masked_in_logs() -> None:
    from feedbot.logs import Redactor, secrets_of

    settings = settings_from_mapping(
        {"slack": {"bot_token": "xoxb-1", "app_token": "xapp-1-configured"}}, {}
    )
    redact = Redactor(secrets_of(settings))
    assert redact("token xapp-1-configured and xapp-1-A2-3-other") == (
        "token [redacted] and [redacted]"
    )


def test_charts_are_on_unless_switched_off() -> None:
    assert load_settings(ROOT / "config.example.yaml", {}).slack.charts is True
    assert settings_from_mapping({}, {}).slack.charts is True
    assert settings_from_mapping({"slack": {"charts": False}}, {}).slack.charts is False
    assert problems({"slack": {"charts": "no"}}) == [
        "slack.charts: expected true or false, got a string"
    ]


def test_web_pages_and_the_meeting_are_validated() -> None:
    found = problems(
        {
            "web": {"page_secret": "short", "page_links": "public", "link_ttl": "1s"},
            "slack": {"weekly_digest": {"cadence": "monthly", "meeting_link": "zoom"}},
        }
    )
    assert "web.page_secret: must be at least 16 characters (a random string)" in found
    assert "web.page_links: 'public' is not one of signed, open" in found
    assert "web.link_ttl: must be at least 1m" in found
    assert "slack.weekly_digest.cadence: 'monthly' is not one of weekly, biweekly" in found
    assert "slack.weekly_digest.meeting_link: 'zoom' is not an http(s) URL" in found
    s = settings_from_mapping(
        {"slack": {"weekly_digest": {"cadence": "biweekly"}}},
        {"FEEDBOT_PAGE_SECRET": "from-the-environment"},
    )
    assert s.web.page_secret == "from-the-environment" and s.web.page_links == "signed"
    assert s.slack.weekly_digest.period.days == 14


def test_the_page_secret_is_masked_in_logs() -> None:
    from feedbot.logs import Redactor, secrets_of

    secret = "page-secret-0123456789abcdef"
    settings = settings_from_mapping({}, {"FEEDBOT_PAGE_SECRET": secret})
    assert settings.web.page_secret == secret
    assert Redactor(secrets_of(settings))(f"signed with {secret}") == "signed with [redacted]"
