"""Trace backends, one module each, chosen by ``traces.backend``."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from feedbot.backends.base import TraceBackend
from feedbot.config import Settings
from feedbot.errors import ConfigError


def build_backend(settings: Settings, sessions: sessionmaker[Session]) -> TraceBackend:
    """The backend ``traces.backend`` names, built from the settings.

    Raises:
        ConfigError: the backend is not available in this build.
    """
    name = settings.traces.backend
    if name == "embedded":
        from feedbot.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(sessions)
    raise ConfigError([f"traces.backend: {name!r} is not available in this version yet"])
