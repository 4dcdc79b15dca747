from __future__ import annotations

import hashlib
import hmac

import pytest

from feedbot.errors import WebhookRejected
from feedbot.releases.sources import (
    ArgoCDDeploySource,
    GenericDeploySource,
    GitHubDeploySource,
    GitLabDeploySource,
    build_sources,
)
from feedbot.releases.sources.base import DeploySource


def test_all_sources_when_every_secret_is_set() -> None:
    sources = build_sources(secret="a", github_secret="b", gitlab_token="c", argocd_token="d")
    assert list(sources) == ["generic", "github", "gitlab", "argocd"]
    assert isinstance(sources["generic"], GenericDeploySource)
    assert isinstance(sources["github"], GitHubDeploySource)
    assert isinstance(sources["gitlab"], GitLabDeploySource)
    assert isinstance(sources["argocd"], ArgoCDDeploySource)
    for name, source in sources.items():
        assert isinstance(source, DeploySource)
        assert source.name == name


def test_no_secret_no_source() -> None:
    assert (
        build_sources(secret=None, github_secret=None, gitlab_token=None, argocd_token=None) == {}
    )


def test_empty_secrets_count_as_unset() -> None:
    assert build_sources(secret="", github_secret="", gitlab_token="", argocd_token=None) == {}


def test_argocd_falls_back_to_the_generic_secret() -> None:
    sources = build_sources(
        secret="shared", github_secret=None, gitlab_token=None, argocd_token=None
    )
    assert set(sources) == {"generic", "argocd"}
    sources["argocd"].verify({"authorization": "Bearer shared"}, b"{}")


def test_argocd_token_wins_over_the_generic_secret() -> None:
    sources = build_sources(
        secret="shared", github_secret=None, gitlab_token=None, argocd_token="own"
    )
    sources["argocd"].verify({"authorization": "Bearer own"}, b"{}")
    with pytest.raises(WebhookRejected):
        sources["argocd"].verify({"authorization": "Bearer shared"}, b"{}")


def test_each_source_uses_its_own_secret() -> None:
    sources = build_sources(secret="a", github_secret="b", gitlab_token="c", argocd_token="d")
    body = b"{}"
    signature = "sha256=" + hmac.new(b"a", body, hashlib.sha256).hexdigest()
    sources["generic"].verify({"x-feedbot-signature": signature}, body)
    with pytest.raises(WebhookRejected):
        sources["github"].verify({"x-hub-signature-256": signature}, body)
