"""Every error feedbot raises on purpose, under one root.

::

    FeedbotError
    ├── ConfigError            the config file or environment is wrong (exit code 2)
    ├── WebhookRejected        an incoming request is refused (carries the HTTP status)
    ├── BackendError           a trace backend could not answer
    │   ├── BackendUnavailable     connection refused, timeout, 5xx after retries
    │   └── BackendResponseError   it answered, but not in the documented shape
    ├── DeliveryError          a notifier could not deliver a message
    ├── GitError               git failed or is missing (``feedbot notify-deploy``)
    └── GitHubError            GitHub's REST API refused or is rate-limited (the PR preview)

Foreign exceptions (httpx, slack_sdk, SQLAlchemy) are translated at the seam that calls them, so
callers only ever catch these. Every message names the object and the field it is about.
"""

from __future__ import annotations

from collections.abc import Sequence


class FeedbotError(Exception):
    """Root of every error feedbot raises on purpose."""


class ConfigError(FeedbotError):
    """The configuration is invalid.

    Args:
        problems: one ``path.to.key: problem`` line per problem found, all of them at once.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class WebhookRejected(FeedbotError):
    """An incoming request is refused; ``status`` is the HTTP status to answer with.

    Args:
        status: 400, 401, 413, 415 or 422.
        message: what is wrong, naming the field (``"version: is required"``).
    """

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}")

    def __reduce__(self) -> tuple[type[WebhookRejected], tuple[int, str]]:
        # Pickled as (status, message): a refusal made in a decoding process reaches the
        # handler that answers it.
        return type(self), (self.status, self.message)


class BackendError(FeedbotError):
    """A trace backend could not give an answer."""


class BackendUnavailable(BackendError):
    """The backend did not answer: connection error, timeout, or 5xx after retries."""


class BackendResponseError(BackendError):
    """The backend answered in a shape feedbot does not understand."""


class DeliveryError(FeedbotError):
    """A notifier could not deliver a message (after its own retries).

    Args:
        message: what failed.
        retryable: False when trying again cannot help (``channel_not_found``, bad token).
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        self.retryable = retryable
        super().__init__(message)


class GitError(FeedbotError):
    """git failed or is missing; the message names the command and the revision."""


class GitHubError(FeedbotError):
    """GitHub's REST API did not do what was asked (the pull-request preview's comment and diff).

    Args:
        message: the request and GitHub's answer.
        retry_after: seconds until GitHub's rate limit lets feedbot try again, when limited.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)
