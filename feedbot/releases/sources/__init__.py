"""Deploy sources, one module per webhook dialect, and the registry keyed by config name."""

from __future__ import annotations

from feedbot.releases.sources.argocd import ArgoCDDeploySource
from feedbot.releases.sources.base import DeploySource
from feedbot.releases.sources.generic import GenericDeploySource
from feedbot.releases.sources.github import GitHubDeploySource
from feedbot.releases.sources.gitlab import GitLabDeploySource

__all__ = [
    "ArgoCDDeploySource",
    "DeploySource",
    "GenericDeploySource",
    "GitHubDeploySource",
    "GitLabDeploySource",
    "build_sources",
]


def build_sources(
    *,
    secret: str | None,
    github_secret: str | None,
    gitlab_token: str | None,
    argocd_token: str | None,
) -> dict[str, DeploySource]:
    """Build the sources whose secret is configured; an unset or empty secret leaves one out.

    Args:
        secret: the generic webhook's HMAC secret; also Argo CD's bearer token when
            ``argocd_token`` is None.
        github_secret: the GitHub webhook secret.
        gitlab_token: the GitLab webhook secret token.
        argocd_token: the Argo CD Notifications bearer token.

    Returns:
        The sources keyed by name (``generic``, ``github``, ``gitlab``, ``argocd``), which is
        also the last part of their URL, ``/webhooks/<name>``.
    """
    sources: dict[str, DeploySource] = {}
    if secret:
        sources["generic"] = GenericDeploySource(secret)
    if github_secret:
        sources["github"] = GitHubDeploySource(github_secret)
    if gitlab_token:
        sources["gitlab"] = GitLabDeploySource(gitlab_token)
    argocd = argocd_token if argocd_token is not None else secret
    if argocd:
        sources["argocd"] = ArgoCDDeploySource(argocd)
    return sources
