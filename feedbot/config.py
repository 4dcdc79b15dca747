"""Configuration: ``feedbot.yaml`` plus the environment, validated once into frozen dataclasses.

Every problem is collected, not just the first, and reported as a ``path.to.key: problem`` line
(:class:`feedbot.errors.ConfigError`; the CLI exits with status 2). ``${VAR}`` and
``${VAR:-default}`` in string values are replaced from the environment, so secrets stay out of
the file; a few well-known variables (``SLACK_BOT_TOKEN``, ``FEEDBOT_WEBHOOK_SECRET``, …, see
:data:`ENV_OVERRIDES`) override the file outright.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from feedbot.durations import parse_duration
from feedbot.errors import ConfigError
from feedbot.policy import override_problems

BACKENDS = ("embedded", "otlp-file", "tempo", "jaeger", "zipkin", "clickhouse")
SLACK_API_URL = "https://slack.com/api/"

#: Environment variables that override a key of the file (secrets and deployment specifics).
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "FEEDBOT_DATABASE_URL": ("database_url",),
    "FEEDBOT_PUBLIC_URL": ("public_url",),
    "SLACK_BOT_TOKEN": ("slack", "bot_token"),
    "SLACK_SIGNING_SECRET": ("slack", "signing_secret"),
    "SLACK_APP_TOKEN": ("slack", "app_token"),
    "FEEDBOT_WEBHOOK_SECRET": ("webhooks", "secret"),
    "FEEDBOT_GITHUB_SECRET": ("webhooks", "github_secret"),
    "FEEDBOT_GITLAB_TOKEN": ("webhooks", "gitlab_token"),
    "FEEDBOT_ARGOCD_TOKEN": ("webhooks", "argocd_token"),
    "FEEDBOT_INGEST_TOKEN": ("traces", "ingest_token"),
    "GITHUB_TOKEN": ("github", "token"),
    "FEEDBOT_PAGE_SECRET": ("web", "page_secret"),
}

GITHUB_API_URL = "https://api.github.com"
#: A GitHub token's shape: classic (``ghp_``), fine-grained (``github_pat_``), app installation
#: (``ghs_``), OAuth (``gho_``), user-to-server (``ghu_``), refresh (``ghr_``), or legacy 40 hex.
GITHUB_TOKEN = re.compile(
    r"^(gh[psuor]_[A-Za-z0-9]{30,251}|github_pat_[A-Za-z0-9_]{30,251}|[0-9a-f]{40})$"
)


def github_token_problem(token: str) -> str | None:
    """Why ``token`` cannot be a GitHub token, or None when it looks like one."""
    if GITHUB_TOKEN.match(token):
        return None
    return (
        "expected a GitHub token (ghp_…, github_pat_…, ghs_…, gho_…, ghu_…, or 40 hex characters)"
    )


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    #: A request's body must arrive within this time, else 408 (slow clients hold no worker).
    request_timeout: timedelta = timedelta(seconds=30)
    #: The largest body of any request (413 above it); endpoints may have smaller limits.
    max_body_bytes: int = 16 * 1024 * 1024


LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class LogConfig:
    #: ``text`` for people, ``json`` (one object per line) for log collectors.
    format: str = "text"


@dataclass(frozen=True)
class TelemetryConfig:
    #: OTLP/HTTP traces URL (``http://collector:4318/v1/traces``); tracing is off when None.
    traces_endpoint: str | None = None
    #: ``service.name`` of feedbot's own spans.
    service_name: str = "feedbot"


CADENCES = ("weekly", "biweekly")


@dataclass(frozen=True)
class DigestConfig:
    channel: str | None = None
    cron: str = "0 9 * * mon"
    timezone: str = "UTC"
    #: ``weekly`` or ``biweekly`` (every other week: the fires of even weeks since 1970-01-05,
    #: each digest covering two weeks).
    cadence: str = "weekly"
    #: Where the feedback meeting happens (a video call), linked from the digest and its page.
    meeting_link: str | None = None

    @property
    def period(self) -> timedelta:
        """What one digest (and one meeting) covers: a week, or two."""
        return timedelta(days=14 if self.cadence == "biweekly" else 7)


PAGE_LINKS = ("signed", "open")


@dataclass(frozen=True)
class WebConfig:
    """The release, service and meeting pages (:mod:`feedbot.web.pages`).

    Attributes:
        page_secret: HMAC key of the links' tokens; without it, ``signed`` pages answer 403.
        page_links: ``signed`` (a link carries an expiring token; the default) or ``open``
            (for a team whose proxy already logs people in: no token asked).
        link_ttl: How long a signed link opens its page.
    """

    page_secret: str | None = None
    page_links: str = "signed"
    link_ttl: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class SlackConfig:
    bot_token: str | None = None
    signing_secret: str | None = None
    #: An app-level token (``xapp-…``): feedbot then connects out to Slack in Socket Mode.
    app_token: str | None = None
    api_url: str = SLACK_API_URL
    weekly_digest: DigestConfig = field(default_factory=DigestConfig)
    #: Upload a chart of a changed route into the thread after the check's reply.
    charts: bool = True


@dataclass(frozen=True)
class WebhooksConfig:
    secret: str | None = None
    github_secret: str | None = None
    gitlab_token: str | None = None
    argocd_token: str | None = None
    max_body_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class TracesConfig:
    backend: str = "embedded"
    url: str | None = None
    ui_url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    path: str | None = None
    retention: timedelta = timedelta(days=7)
    max_spans: int = 10_000_000
    timeout: timedelta = timedelta(seconds=30)
    ingest_token: str | None = None
    ingest_max_spans: int = 50_000


@dataclass(frozen=True)
class ChecksConfig:
    after: tuple[timedelta, ...] = (
        timedelta(minutes=15),
        timedelta(hours=1),
        timedelta(hours=4),
        timedelta(hours=24),
    )
    baseline_window: timedelta = timedelta(hours=24)
    max_attempts: int = 5
    retry_backoff: timedelta = timedelta(seconds=30)
    tick: timedelta = timedelta(seconds=5)
    lease: timedelta = timedelta(minutes=5)
    #: How long the code history (what each check saw per operation, function and file) is
    #: kept; older rows are deleted as checks finish.
    history_retention: timedelta = timedelta(days=400)


@dataclass(frozen=True)
class ServiceConfig:
    channel: str | None = None
    owners: tuple[str, ...] = ()
    environment: str | None = None
    #: Post confirmed regressions and new error types to ``channel`` too.
    broadcast: bool = True
    #: Per-detector thresholds and off switches: ``{detector: {setting: value}}``.
    detectors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class FeatureConfig:
    service: str
    spans: tuple[str, ...] = ()
    code: tuple[str, ...] = ()


@dataclass(frozen=True)
class Person:
    email: str | None = None
    slack: str | None = None
    github: str | None = None
    gitlab: str | None = None


@dataclass(frozen=True)
class RepoService:
    """One service a repository deploys, and the files that are its code (``github.services``).

    Attributes:
        service: the service's name, as its spans' ``service.name`` says it.
        paths: globs of repository paths (``*`` within a directory, ``**`` across them, ``?``
            one character); a glob matching a directory covers everything under it. Empty: all.
    """

    service: str
    paths: tuple[str, ...] = ()

    def owns(self, path: str) -> bool:
        """Whether the changed file ``path`` is this service's code."""
        if not self.paths:
            return True
        parts = path.strip("/").split("/")
        candidates = ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]
        return any(
            _glob_regex(glob).fullmatch(candidate)
            for glob in self.paths
            for candidate in candidates
        )


@functools.lru_cache(maxsize=512)
def _glob_regex(glob: str) -> re.Pattern[str]:
    """A path glob as a regex: ``**/`` any directories, ``**`` anything, ``*``, ``?`` not ``/``."""
    out, i, glob = [], 0, glob.strip("/")
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out))


def repo_services(
    repository: str, services: Mapping[str, tuple[RepoService, ...]]
) -> tuple[RepoService, ...]:
    """The services ``repository`` deploys: its ``github.services`` entry, else its name alone."""
    found = services.get(repository) or next(
        (v for k, v in services.items() if k.lower() == repository.lower()), None
    )
    return found or (RepoService(repository.rpartition("/")[2]),)


@dataclass(frozen=True)
class GitHubConfig:
    """GitHub's REST API, for the pull-request preview's comment and diff."""

    #: A token that may read the repository and write pull-request comments; None: no comment.
    token: str | None = field(default=None, repr=False)
    api_url: str = GITHUB_API_URL
    #: How far back the preview reads production spans.
    preview_window: timedelta = timedelta(days=7)
    #: ``owner/name`` → the services it deploys; a repository not listed deploys its name.
    services: Mapping[str, tuple[RepoService, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """The whole validated configuration."""

    database_url: str = "sqlite:///feedbot.db"
    server: ServerConfig = field(default_factory=ServerConfig)
    public_url: str | None = None
    web: WebConfig = field(default_factory=WebConfig)
    slack: SlackConfig = field(default_factory=SlackConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    traces: TracesConfig = field(default_factory=TracesConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    services: Mapping[str, ServiceConfig] = field(default_factory=dict)
    features: Mapping[str, FeatureConfig] = field(default_factory=dict)
    people: tuple[Person, ...] = ()
    log: LogConfig = field(default_factory=LogConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    github: GitHubConfig = field(default_factory=GitHubConfig)


# --- durations -------------------------------------------------------------------------------

# --- environment interpolation ---------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _interpolate(value: Any, env: Mapping[str, str], path: str, problems: list[str]) -> Any:
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(f"{path}: environment variable {name} is not set")
            return ""

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, env, _join(path, str(k)), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- the reader ------------------------------------------------------------------------------


class _Reader:
    """Walks the raw mapping, converting values and collecting every problem."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, text: str) -> None:
        self.problems.append(f"{path}: {text}")

    def section(self, raw: Any, path: str, known: tuple[str, ...]) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.problem(path or "(top level)", f"expected a mapping, got {_kind(raw)}")
            return {}
        for key in raw:
            if key not in known:
                hint = difflib.get_close_matches(str(key), known, n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.problem(_join(path, str(key)), f"unknown key{extra}")
        return {k: v for k, v in raw.items() if k in known and v is not None}

    def string(self, raw: dict[str, Any], key: str, path: str, default: Any = None) -> Any:
        if key not in raw:
            return default
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(_join(path, key), f"expected a string, got {_kind(value)}")
            return default
        try:
            text = str(value).strip()
        except ValueError:  # an integer too long to print (Python refuses over 4,300 digits)
            self.problem(_join(path, key), "expected a string, got an enormous number")
            return default
        return text if text else default

    def integer(self, raw: dict[str, Any], key: str, path: str, default: int, low: int) -> int:
        value = raw.get(key, default)
        if isinstance(value, str):
            digits = value.strip()
            # isdigit() also accepts "²" and other digits int() refuses; 18 digits fit int64.
            if digits.isascii() and digits.isdigit() and len(digits) <= 18:
                value = int(digits)
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(_join(path, key), f"expected an integer, got {_kind(value)}")
            return default
        if value < low:
            self.problem(_join(path, key), f"must be at least {low}, got {value}")
            return default
        return value

    def duration(self, raw: dict[str, Any], key: str, path: str, default: timedelta) -> timedelta:
        if key not in raw:
            return default
        return self.duration_value(raw[key], _join(path, key), default)

    def duration_value(self, value: Any, path: str, default: timedelta) -> timedelta:
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.problem(path, f"expected a duration like 15m, got {_kind(value)}")
            return default
        try:
            return parse_duration(f"{value}s" if isinstance(value, int) else value)
        except ValueError as exc:
            self.problem(path, str(exc))
            return default

    def strings(self, raw: dict[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = raw.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.problem(_join(path, key), f"expected a list of strings, got {_kind(value)}")
            return ()
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.problem(f"{_join(path, key)}[{i}]", "expected a non-empty string")
            else:
                out.append(item.strip())
        return tuple(out)

    def mapping_of(self, raw: Any, path: str, build: Callable[[Any, str], Any]) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.problem(path, f"expected a mapping of names, got {_kind(raw)}")
            return {}
        return {str(name): build(value, _join(path, str(name))) for name, value in raw.items()}


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return names.get(type(value), type(value).__name__)


TOP_KEYS = (
    "database_url",
    "server",
    "public_url",
    "web",
    "slack",
    "webhooks",
    "traces",
    "checks",
    "services",
    "features",
    "people",
    "log",
    "telemetry",
    "github",
)


def settings_from_mapping(raw: Any, env: Mapping[str, str] | None = None) -> Settings:
    """Validate a raw mapping (as loaded from YAML) into :class:`Settings`.

    Raises:
        ConfigError: listing every problem found.
    """
    env = dict(os.environ if env is None else env)
    reader = _Reader()
    raw = _interpolate(raw if raw is not None else {}, env, "", reader.problems)
    top = reader.section(raw, "", TOP_KEYS)
    _apply_env_overrides(top, env)
    settings = Settings(
        database_url=reader.string(top, "database_url", "", Settings.database_url),
        server=_server(reader, top.get("server")),
        public_url=_url(reader, top, "public_url", ""),
        web=_web(reader, top.get("web")),
        slack=_slack(reader, top.get("slack")),
        webhooks=_webhooks(reader, top.get("webhooks")),
        traces=_traces(reader, top.get("traces")),
        checks=_checks(reader, top.get("checks")),
        services=reader.mapping_of(top.get("services"), "services", _service_builder(reader)),
        features=reader.mapping_of(top.get("features"), "features", _feature_builder(reader)),
        people=_people(reader, top.get("people")),
        log=_log(reader, top.get("log")),
        telemetry=_telemetry(reader, top.get("telemetry")),
        github=_github(reader, top.get("github")),
    )
    _cross_checks(reader, settings)
    if reader.problems:
        raise ConfigError(reader.problems)
    return settings


def load_settings(path: str | Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a config file; ``None`` means embedded defaults plus the environment.

    Raises:
        ConfigError: the file is missing, not YAML, or invalid.
    """
    if path is None:
        return settings_from_mapping({}, env)
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read the file ({exc.strerror})"]) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"{file}: not valid YAML{where}"]) from exc
    return settings_from_mapping(raw, env)


def _apply_env_overrides(top: dict[str, Any], env: Mapping[str, str]) -> None:
    for name, path in ENV_OVERRIDES.items():
        value = env.get(name, "").strip()
        if not value:
            continue
        if len(path) == 1:
            top[path[0]] = value
            continue
        section = top.get(path[0])
        if not isinstance(section, dict):
            section = {} if section is None else section
        if isinstance(section, dict):
            top[path[0]] = {**section, path[1]: value}


def _url(reader: _Reader, raw: dict[str, Any], key: str, path: str) -> str | None:
    value = reader.string(raw, key, path)
    if value is not None and not re.match(r"^https?://[^\s/]+", value):
        reader.problem(_join(path, key), f"{value!r} is not an http(s) URL")
        return None
    return value  # type: ignore[no-any-return]


def _server(reader: _Reader, raw: Any) -> ServerConfig:
    keys = ("host", "port", "request_timeout", "max_body_bytes")
    section = reader.section(raw, "server", keys)
    port = reader.integer(section, "port", "server", ServerConfig.port, 1)
    if port > 65535:
        reader.problem("server.port", f"must be at most 65535, got {port}")
    defaults = ServerConfig()
    return ServerConfig(
        host=reader.string(section, "host", "server", defaults.host),
        port=port,
        request_timeout=reader.duration(
            section, "request_timeout", "server", defaults.request_timeout
        ),
        max_body_bytes=reader.integer(
            section, "max_body_bytes", "server", defaults.max_body_bytes, 1024
        ),
    )


def _log(reader: _Reader, raw: Any) -> LogConfig:
    section = reader.section(raw, "log", ("format",))
    fmt = reader.string(section, "format", "log", LogConfig.format)
    if fmt not in LOG_FORMATS:
        reader.problem("log.format", f"{fmt!r} is not one of {', '.join(LOG_FORMATS)}")
        fmt = LogConfig.format
    return LogConfig(format=fmt)


def _telemetry(reader: _Reader, raw: Any) -> TelemetryConfig:
    section = reader.section(raw, "telemetry", ("traces_endpoint", "service_name"))
    endpoint = _url(reader, section, "traces_endpoint", "telemetry")
    if endpoint is not None and not urlsplit(endpoint).path.strip("/"):
        reader.problem(
            "telemetry.traces_endpoint",
            f"{endpoint!r} has no path: OTLP/HTTP traces go to …/v1/traces",
        )
        endpoint = None
    return TelemetryConfig(
        traces_endpoint=endpoint,
        service_name=reader.string(section, "service_name", "telemetry", "feedbot"),
    )


def _github(reader: _Reader, raw: Any) -> GitHubConfig:
    section = reader.section(raw, "github", ("token", "api_url", "preview_window", "services"))
    token = reader.string(section, "token", "github")
    if token is not None and (problem := github_token_problem(token)) is not None:
        reader.problem("github.token", problem)
        token = None
    window = reader.duration(section, "preview_window", "github", GitHubConfig.preview_window)
    if window < timedelta(hours=1) or window > timedelta(days=90):
        reader.problem("github.preview_window", "must be between 1h and 90d")
        window = GitHubConfig.preview_window
    return GitHubConfig(
        token=token,
        api_url=_url(reader, section, "api_url", "github") or GITHUB_API_URL,
        preview_window=window,
        services=_repo_services(reader, section.get("services")),
    )


_REPOSITORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")
_GLOB_CHARS = re.compile(r"^[^\\\[\]{}]+$")


def _repo_services(reader: _Reader, raw: Any) -> dict[str, tuple[RepoService, ...]]:
    """``github.services``: ``owner/name`` → a service name, or a list of ``{service, paths}``."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        reader.problem("github.services", f"expected a mapping of owner/name, got {_kind(raw)}")
        return {}
    out: dict[str, tuple[RepoService, ...]] = {}
    for key, value in raw.items():
        repository, path = str(key).strip(), f"github.services.{key}"
        if not _REPOSITORY.match(repository):
            reader.problem(path, "expected a repository as owner/name (like acme/vault)")
            continue
        entries = _repo_entries(reader, value, path)
        if entries:
            out[repository] = entries
    return out


def _repo_entries(reader: _Reader, value: Any, path: str) -> tuple[RepoService, ...]:
    if isinstance(value, str) and value.strip():
        return (RepoService(value.strip()),)
    if not isinstance(value, list) or not value:
        reader.problem(
            path,
            "expected a service name or a list of {service, paths}, got "
            + ("an empty list" if value == [] else _kind(value)),
        )
        return ()
    entries, seen = [], set()
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        section = reader.section(item, where, ("service", "paths"))
        if not isinstance(item, dict):
            continue
        service = reader.string(section, "service", where)
        if service is None:
            reader.problem(_join(where, "service"), "is required")
        elif service in seen:
            reader.problem(_join(where, "service"), f"{service!r} is listed twice")
        paths = reader.strings(section, "paths", where)
        if not paths and "paths" not in section:
            reader.problem(_join(where, "paths"), "is required (globs like services/billing/**)")
        elif not paths and isinstance(section.get("paths"), list):
            reader.problem(_join(where, "paths"), "needs at least one glob")
        for j, glob in enumerate(paths):
            if not _GLOB_CHARS.match(glob):
                reader.problem(
                    f"{_join(where, 'paths')}[{j}]",
                    f"{glob!r}: only *, ** and ? are glob characters (no [], {{}} or \\)",
                )
        if service is not None and service not in seen:
            seen.add(service)
            entries.append(RepoService(service, paths))
    return tuple(entries)


def _slack(reader: _Reader, raw: Any) -> SlackConfig:
    keys = ("bot_token", "signing_secret", "app_token", "api_url", "weekly_digest", "charts")
    section = reader.section(raw, "slack", keys)
    digest_raw = reader.section(
        section.get("weekly_digest"),
        "slack.weekly_digest",
        ("channel", "cron", "timezone", "cadence", "meeting_link"),
    )
    path = "slack.weekly_digest"
    cadence = reader.string(digest_raw, "cadence", path, DigestConfig.cadence)
    if cadence not in CADENCES:
        reader.problem(f"{path}.cadence", f"{cadence!r} is not one of {', '.join(CADENCES)}")
        cadence = DigestConfig.cadence
    digest = DigestConfig(
        channel=reader.string(digest_raw, "channel", path),
        cron=reader.string(digest_raw, "cron", path, DigestConfig.cron),
        timezone=reader.string(digest_raw, "timezone", path, DigestConfig.timezone),
        cadence=cadence,
        meeting_link=_url(reader, digest_raw, "meeting_link", path),
    )
    _check_cron(reader, digest)
    api_url = _url(reader, section, "api_url", "slack") or SLACK_API_URL
    return SlackConfig(
        bot_token=reader.string(section, "bot_token", "slack"),
        signing_secret=reader.string(section, "signing_secret", "slack"),
        app_token=reader.string(section, "app_token", "slack"),
        api_url=api_url if api_url.endswith("/") else api_url + "/",
        weekly_digest=digest,
        charts=_flag(reader, section, "charts", "slack", SlackConfig.charts),
    )


def _web(reader: _Reader, raw: Any) -> WebConfig:
    section = reader.section(raw, "web", ("page_secret", "page_links", "link_ttl"))
    links = reader.string(section, "page_links", "web", WebConfig.page_links)
    if links not in PAGE_LINKS:
        reader.problem("web.page_links", f"{links!r} is not one of {', '.join(PAGE_LINKS)}")
        links = WebConfig.page_links
    secret = reader.string(section, "page_secret", "web")
    if secret is not None and len(secret) < 16:
        reader.problem("web.page_secret", "must be at least 16 characters (a random string)")
        secret = None
    ttl = reader.duration(section, "link_ttl", "web", WebConfig.link_ttl)
    if ttl < timedelta(minutes=1):
        reader.problem("web.link_ttl", "must be at least 1m")
        ttl = WebConfig.link_ttl
    return WebConfig(page_secret=secret, page_links=links, link_ttl=ttl)


def _flag(reader: _Reader, section: dict[str, Any], key: str, path: str, default: bool) -> bool:
    """A true/false setting; a problem (and the default) when it is anything else."""
    value = section.get(key, default)
    if not isinstance(value, bool):
        reader.problem(_join(path, key), f"expected true or false, got {_kind(value)}")
        return default
    return value


def _check_cron(reader: _Reader, digest: DigestConfig) -> None:
    try:
        ZoneInfo(digest.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
        reader.problem("slack.weekly_digest.timezone", f"unknown time zone {digest.timezone!r}")
        return
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(digest.cron, timezone=digest.timezone)
    except ValueError as exc:
        reader.problem("slack.weekly_digest.cron", f"not a 5-field crontab expression ({exc})")


def _webhooks(reader: _Reader, raw: Any) -> WebhooksConfig:
    keys = ("secret", "github_secret", "gitlab_token", "argocd_token", "max_body_bytes")
    section = reader.section(raw, "webhooks", keys)
    return WebhooksConfig(
        secret=reader.string(section, "secret", "webhooks"),
        github_secret=reader.string(section, "github_secret", "webhooks"),
        gitlab_token=reader.string(section, "gitlab_token", "webhooks"),
        argocd_token=reader.string(section, "argocd_token", "webhooks"),
        max_body_bytes=reader.integer(
            section, "max_body_bytes", "webhooks", WebhooksConfig.max_body_bytes, 1024
        ),
    )


def _traces(reader: _Reader, raw: Any) -> TracesConfig:
    keys = (
        *("backend", "url", "ui_url", "headers", "path", "retention", "max_spans", "timeout"),
        *("ingest_token", "ingest_max_spans"),
    )
    section = reader.section(raw, "traces", keys)
    backend = reader.string(section, "backend", "traces", "embedded")
    if backend not in BACKENDS:
        hint = difflib.get_close_matches(str(backend), BACKENDS, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        reader.problem("traces.backend", f"{backend!r} is not one of {', '.join(BACKENDS)}{extra}")
        backend = "embedded"
    headers = section.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        reader.problem("traces.headers", "expected a mapping of header names to strings")
        headers = {}
    return TracesConfig(
        backend=backend,
        url=_url(reader, section, "url", "traces"),
        ui_url=_url(reader, section, "ui_url", "traces"),
        headers={str(k): v for k, v in headers.items()},
        path=reader.string(section, "path", "traces"),
        retention=reader.duration(section, "retention", "traces", TracesConfig.retention),
        max_spans=reader.integer(section, "max_spans", "traces", TracesConfig.max_spans, 1000),
        timeout=reader.duration(section, "timeout", "traces", TracesConfig.timeout),
        ingest_token=_token(reader, section, "ingest_token", "traces"),
        ingest_max_spans=reader.integer(
            section, "ingest_max_spans", "traces", TracesConfig.ingest_max_spans, 1
        ),
    )


def _token(reader: _Reader, raw: dict[str, Any], key: str, path: str) -> str | None:
    """A bearer token: printable ASCII without spaces, as an ``Authorization`` header carries."""
    value = reader.string(raw, key, path)
    if value and not re.fullmatch(r"[\x21-\x7e]+", value):
        reader.problem(f"{path}.{key}", "must be printable ASCII without spaces")
        return None
    return value or None


def _checks(reader: _Reader, raw: Any) -> ChecksConfig:
    keys = (
        "after",
        "baseline_window",
        "max_attempts",
        "retry_backoff",
        "tick",
        "lease",
        "history_retention",
    )
    section = reader.section(raw, "checks", keys)
    defaults = ChecksConfig()
    after = defaults.after
    if "after" in section:
        values = section["after"]
        if not isinstance(values, list) or not values:
            reader.problem("checks.after", "expected a non-empty list of durations like 15m")
        else:
            parsed = [
                reader.duration_value(v, f"checks.after[{i}]", timedelta(0))
                for i, v in enumerate(values)
            ]
            if len(set(parsed)) != len(parsed):
                reader.problem("checks.after", "the same offset is listed twice")
            after = tuple(sorted(parsed))
    return ChecksConfig(
        after=after,
        baseline_window=reader.duration(
            section, "baseline_window", "checks", defaults.baseline_window
        ),
        max_attempts=reader.integer(section, "max_attempts", "checks", defaults.max_attempts, 1),
        retry_backoff=reader.duration(section, "retry_backoff", "checks", defaults.retry_backoff),
        tick=reader.duration(section, "tick", "checks", defaults.tick),
        lease=reader.duration(section, "lease", "checks", defaults.lease),
        history_retention=reader.duration(
            section, "history_retention", "checks", defaults.history_retention
        ),
    )


def _service_builder(reader: _Reader) -> Callable[[Any, str], ServiceConfig]:
    def build(raw: Any, path: str) -> ServiceConfig:
        section = reader.section(
            raw, path, ("channel", "owners", "environment", "broadcast", "detectors")
        )
        broadcast = section.get("broadcast", True)
        if not isinstance(broadcast, bool):
            reader.problem(
                _join(path, "broadcast"), f"expected true or false, got {_kind(broadcast)}"
            )
            broadcast = True
        return ServiceConfig(
            channel=reader.string(section, "channel", path),
            owners=reader.strings(section, "owners", path),
            environment=reader.string(section, "environment", path),
            broadcast=broadcast,
            detectors=_detectors(reader, section.get("detectors"), _join(path, "detectors")),
        )

    return build


def _detectors(reader: _Reader, raw: Any, path: str) -> dict[str, dict[str, Any]]:
    """Validate per-detector overrides against the analysis policy's own fields."""
    # The policy is pure data (no I/O); it is the one place that knows each detector's
    # settings, so the config asks it rather than keeping a second list.
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        reader.problem(path, f"expected a mapping of detectors, got {_kind(raw)}")
        return {}
    problems = override_problems(raw)
    for problem in problems:
        reader.problem(f"{path}.{problem.split(': ', 1)[0]}", problem.split(": ", 1)[1])
    return {} if problems else {str(k): dict(v) for k, v in raw.items()}


def _feature_builder(reader: _Reader) -> Callable[[Any, str], FeatureConfig]:
    def build(raw: Any, path: str) -> FeatureConfig:
        section = reader.section(raw, path, ("service", "spans", "code"))
        service = reader.string(section, "service", path)
        if service is None:
            reader.problem(_join(path, "service"), "is required")
        spans, code = reader.strings(section, "spans", path), reader.strings(section, "code", path)
        if not spans and not code:
            reader.problem(path, "needs spans or code to know what the feature is")
        return FeatureConfig(service=service or "", spans=spans, code=code)

    return build


def _people(reader: _Reader, raw: Any) -> tuple[Person, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        reader.problem("people", f"expected a list, got {_kind(raw)}")
        return ()
    people = []
    for i, item in enumerate(raw):
        path = f"people[{i}]"
        section = reader.section(item, path, ("email", "slack", "github", "gitlab"))
        person = Person(**{k: reader.string(section, k, path) for k in section})
        if not person.slack:
            reader.problem(_join(path, "slack"), "is required (the Slack user id, like U0123ABC)")
        people.append(person)
    return tuple(people)


def _slack_checks(reader: _Reader, slack: SlackConfig) -> None:
    """Over HTTP Slack's requests need the signing secret; in Socket Mode, the bot token."""
    if slack.app_token and not slack.app_token.startswith("xapp-"):
        reader.problem(
            "slack.app_token", "expected an app-level token (xapp-…), not a bot or user token"
        )
    if slack.app_token and not slack.bot_token:
        reader.problem(
            "slack.bot_token", "is required when slack.app_token is set (set SLACK_BOT_TOKEN)"
        )
    if slack.bot_token and not slack.signing_secret and not slack.app_token:
        reader.problem(
            "slack.signing_secret",
            "is required when slack.bot_token is set "
            "(set SLACK_SIGNING_SECRET, or SLACK_APP_TOKEN for Socket Mode)",
        )


def _cross_checks(reader: _Reader, s: Settings) -> None:
    """Problems that need two keys: secrets a configured part needs, names that must exist."""
    _slack_checks(reader, s.slack)
    if s.traces.backend in ("tempo", "jaeger", "zipkin", "clickhouse") and not s.traces.url:
        reader.problem("traces.url", f"is required for traces.backend {s.traces.backend!r}")
    if s.traces.backend == "otlp-file" and not s.traces.path:
        reader.problem("traces.path", "is required for traces.backend 'otlp-file' (a glob)")
    for name, feature in s.features.items():
        if s.services and feature.service and feature.service not in s.services:
            hint = difflib.get_close_matches(feature.service, list(s.services), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            reader.problem(
                f"features.{name}.service", f"{feature.service!r} is not under services{extra}"
            )
    if not s.database_url.startswith(("sqlite", "postgresql")):
        reader.problem("database_url", "only sqlite:/// and postgresql+psycopg:// are supported")
