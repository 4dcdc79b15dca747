"""Trace backends, one module each, chosen by ``traces.backend``.

The registry maps each configuration name to a factory taking the settings and the store's
session factory. Modules are imported only when their backend is chosen, so a deployment pays
only for the backend it uses.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
from sqlalchemy.orm import Session, sessionmaker

from feedbot.backends.base import TraceBackend
from feedbot.config import Settings
from feedbot.errors import ConfigError

Factory = Callable[[Settings, sessionmaker[Session]], TraceBackend]


def _embedded(settings: Settings, sessions: sessionmaker[Session]) -> TraceBackend:
    from feedbot.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(sessions)


def _otlp_file(settings: Settings, sessions: sessionmaker[Session]) -> TraceBackend:
    from feedbot.backends.otlp_file import OtlpFileBackend, paths_from_setting

    paths = paths_from_setting(settings.traces.path or "")
    if not paths:
        raise ConfigError(["traces.path: is required for the otlp-file backend (a glob)"])
    return OtlpFileBackend(paths)


def _client(settings: Settings) -> httpx.Client:
    from feedbot.backends.http import make_client

    if not settings.traces.url:
        raise ConfigError(
            [f"traces.url: is required for traces.backend {settings.traces.backend!r}"]
        )
    return make_client(
        settings.traces.url,
        headers=settings.traces.headers,
        timeout=settings.traces.timeout.total_seconds(),
    )


def _jaeger(settings: Settings, sessions: sessionmaker[Session]) -> TraceBackend:
    from feedbot.backends.jaeger import JaegerBackend

    return JaegerBackend(_client(settings), ui_url=settings.traces.ui_url)


def _zipkin(settings: Settings, sessions: sessionmaker[Session]) -> TraceBackend:
    from feedbot.backends.zipkin import ZipkinBackend

    return ZipkinBackend(_client(settings), ui_url=settings.traces.ui_url)


def _tempo(settings: Settings, sessions: sessionmaker[Session]) -> TraceBackend:
    from feedbot.backends.tempo import TempoBackend

    return TempoBackend(_client(settings), ui_url=settings.traces.ui_url)


def _clickhouse(settings: Settings, sessions: sessionmaker[Session]) -> TraceBackend:
    from feedbot.backends.clickhouse import ClickHouseBackend

    return ClickHouseBackend(_client(settings), ui_url=settings.traces.ui_url)


#: Configuration name → factory.
BACKENDS: dict[str, Factory] = {
    "embedded": _embedded,
    "otlp-file": _otlp_file,
    "jaeger": _jaeger,
    "zipkin": _zipkin,
    "tempo": _tempo,
    "clickhouse": _clickhouse,
}


def build_backend(settings: Settings, sessions: sessionmaker[Session]) -> TraceBackend:
    """The backend ``traces.backend`` names, built from the settings.

    Args:
        settings: the validated configuration.
        sessions: the store's session factory (used by the embedded backend).

    Returns:
        The backend, ready to :meth:`~feedbot.backends.base.TraceBackend.collect`.

    Raises:
        ConfigError: the backend is not available in this build, or its settings are incomplete.
    """
    name = settings.traces.backend
    factory = BACKENDS.get(name)
    if factory is None:
        raise ConfigError([f"traces.backend: {name!r} is not available in this version yet"])
    return factory(settings, sessions)
