"""The Helm chart without a Helm binary: values against the schema, references, and guards.

Helm validates the merged values against values.schema.json; here the same happens with
jsonschema for values.yaml and every ``ci/*-values.yaml`` merged over it.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "feedbot"
TEMPLATES = CHART / "templates"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
EXAMPLES = sorted((CHART / "ci").glob("*-values.yaml"))
# Keys under these hold the user's own names (services, features, people), not feedbot's keys.
#: Maps whose keys are the team's own names (services, repositories), not configuration keys.
USER_MAPS = ("services", "features", "people", "github.services")


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing: mappings merge key by key, anything else is replaced."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def errors(values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(values)]


def key_paths(node: Any, prefix: str = "") -> set[str]:
    if not isinstance(node, dict):
        return set()
    paths = set()
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        paths.add(path)
        if path not in USER_MAPS:
            paths |= key_paths(value, path)
    return paths


def template_text() -> str:
    return "\n".join(p.read_text() for p in sorted(TEMPLATES.iterdir()))


def test_the_schema_is_valid_json_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_values_and_examples_match_the_schema(example: Path) -> None:
    assert errors(VALUES) == []
    assert errors(merged(VALUES, yaml.safe_load(example.read_text()))) == []


def test_the_schema_refuses_sqlite_with_several_replicas() -> None:
    for url in ("sqlite:////var/lib/feedbot/feedbot.db", "${FEEDBOT_DATABASE_URL:-sqlite:///x.db}"):
        bad = merged(VALUES, {"replicaCount": 3, "config": {"database_url": url}})
        assert any("database_url" in e for e in errors(bad)), url
        assert errors(merged(bad, {"replicaCount": 1})) == []


def test_the_schema_refuses_a_weakened_security_context() -> None:
    assert errors(merged(VALUES, {"securityContext": {"readOnlyRootFilesystem": False}}))
    assert errors(merged(VALUES, {"securityContext": {"allowPrivilegeEscalation": True}}))
    assert errors(merged(VALUES, {"podSecurityContext": {"runAsNonRoot": False}}))
    assert errors(merged(VALUES, {"config": {"server": {"prot": 8080}}}))


def test_the_config_values_mirror_config_example_key_for_key() -> None:
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    assert key_paths(VALUES["config"]) == key_paths(example)


def test_the_default_config_is_valid_for_feedbot() -> None:
    from feedbot.config import settings_from_mapping

    env = {"FEEDBOT_DATABASE_URL": "postgresql+psycopg://feedbot@db/feedbot"}
    settings = settings_from_mapping(VALUES["config"], env)
    assert settings.server.host == "0.0.0.0"
    assert settings.log.format == "json"


def test_every_value_a_template_references_exists() -> None:
    referenced = set(re.findall(r"\.Values\.([A-Za-z0-9_.]+)", template_text()))
    assert referenced
    for path in sorted(referenced):
        node: Any = VALUES
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f".Values.{path} is not in values.yaml"
            node = node[part]


def test_every_block_in_every_template_is_closed() -> None:
    opener = re.compile(r"\{\{-?\s*(if|range|with|define)\b")
    closer = re.compile(r"\{\{-?\s*end\s*-?\}\}")
    for template in TEMPLATES.iterdir():
        text = template.read_text()
        assert len(opener.findall(text)) == len(closer.findall(text)), template.name


def test_the_deployment_probes_and_locks_down_the_container() -> None:
    deployment = (TEMPLATES / "deployment.yaml").read_text()
    assert re.search(r"livenessProbe:\s+httpGet:\s+path: /healthz", deployment)
    assert re.search(r"readinessProbe:\s+httpGet:\s+path: /readyz", deployment)
    assert "toYaml .Values.securityContext" in deployment
    assert "toYaml .Values.podSecurityContext" in deployment
    assert re.search(r"- name: tmp\s+mountPath: /tmp", deployment)
    assert re.search(r"- name: tmp\s+emptyDir: \{\}", deployment)
    assert "secretRef" in deployment and "feedbot.secretName" in deployment
    context = VALUES["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["runAsNonRoot"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert VALUES["podSecurityContext"]["runAsUser"] == 10001  # the Dockerfile's uid


def test_the_templates_fail_on_sqlite_with_several_replicas() -> None:
    helpers = (TEMPLATES / "_helpers.tpl").read_text()
    guard = helpers.split('define "feedbot.checkDatabase"')[1].split("{{- end -}}\n{{- end -}}")[0]
    assert "gt (int .Values.replicaCount) 1" in guard
    assert 'hasPrefix "sqlite"' in guard and "fail " in guard
    for name in ("deployment.yaml", "configmap.yaml"):
        assert (TEMPLATES / name).read_text().startswith('{{- include "feedbot.checkDatabase" . }}')


def test_the_secret_names_match_the_variables_feedbot_reads() -> None:
    from feedbot.config import ENV_OVERRIDES

    assert set(VALUES["secrets"]["values"]) <= set(ENV_OVERRIDES)
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "FEEDBOT_WEBHOOK_SECRET"} <= set(
        VALUES["secrets"]["values"]
    )
    assert not [v for v in VALUES["secrets"]["values"].values() if v]


def test_optional_objects_are_optional() -> None:
    for name, switch in (
        ("ingress.yaml", "ingress"),
        ("servicemonitor.yaml", "serviceMonitor"),
        ("pdb.yaml", "podDisruptionBudget"),
    ):
        text = (TEMPLATES / name).read_text()
        assert text.startswith(f"{{{{- if .Values.{switch}.enabled }}}}"), name
    assert "/metrics" in (TEMPLATES / "servicemonitor.yaml").read_text()


def test_the_ingress_serves_slack_and_webhooks_and_traces_only_when_asked() -> None:
    ingress = (TEMPLATES / "ingress.yaml").read_text()
    routed = ingress.split("{{- if $.Values.ingress.exposeTraces }}")
    assert len(routed) == 2, "/v1/traces is routed under exposeTraces only"
    always, optional = routed
    assert 'list "/webhooks/" "/slack/"' in always and "/v1/traces" not in always
    assert "path: /v1/traces" in optional and "pathType: Exact" in optional
    assert "- path: /\n" not in ingress and "range .paths" not in ingress
    assert VALUES["ingress"]["exposeTraces"] is False
    assert errors(merged(VALUES, {"ingress": {"hosts": [{"host": "x", "paths": []}]}}))


def test_the_ingest_token_is_on_by_default_from_the_secret() -> None:
    assert VALUES["config"]["traces"]["ingest_token"] == "${FEEDBOT_INGEST_TOKEN:-}"
    assert VALUES["secrets"]["generateIngestToken"] is True
    assert "FEEDBOT_INGEST_TOKEN" in VALUES["secrets"]["values"]
    secret = (TEMPLATES / "secret.yaml").read_text()
    generated = secret.split("{{- if and .Values.secrets.generateIngestToken")[1]
    assert "not .Values.secrets.values.FEEDBOT_INGEST_TOKEN" in generated
    assert "randAlphaNum 48" in generated  # a fresh install gets a token
    assert 'lookup "v1" "Secret"' in generated  # an upgrade keeps the one exporters send
    assert "FEEDBOT_INGEST_TOKEN: {{ $token | quote }}" in generated


def test_the_chart_config_takes_the_token_from_the_environment() -> None:
    from feedbot.config import settings_from_mapping

    env = {"FEEDBOT_DATABASE_URL": "postgresql+psycopg://feedbot@db/feedbot"}
    token = "t0k3n-from-the-secret"
    settings = settings_from_mapping(VALUES["config"], {**env, "FEEDBOT_INGEST_TOKEN": token})
    assert settings.traces.ingest_token == token
    assert settings.traces.ingest_max_spans == 50_000
    assert settings_from_mapping(VALUES["config"], env).traces.ingest_token is None


def test_in_socket_mode_the_ingress_routes_nothing_to_slack() -> None:
    ingress = (TEMPLATES / "ingress.yaml").read_text()
    switch = "or $.Values.slack.socketMode $.Values.secrets.values.SLACK_APP_TOKEN"
    assert switch in ingress
    assert 'if not (and $socketMode (eq $path "/slack/"))' in ingress
    assert VALUES["slack"]["socketMode"] is False  # HTTP stays the default
    assert VALUES["config"]["slack"]["app_token"] == "${SLACK_APP_TOKEN:-}"
    assert "SLACK_APP_TOKEN" in VALUES["secrets"]["values"]
    example = yaml.safe_load((CHART / "ci" / "socket-mode-values.yaml").read_text())
    assert errors(merged(VALUES, example)) == [] and example["slack"]["socketMode"] is True


def test_the_pages_are_routed_and_their_links_signed_with_a_generated_secret() -> None:
    ingress = (TEMPLATES / "ingress.yaml").read_text()
    pages = ingress.split("{{- if $.Values.ingress.exposePages }}")[1].split("{{- end }}\n")
    routed = "".join(pages[:3])
    assert 'list "/releases/" "/services/"' in routed and "- path: /meeting" in routed
    assert VALUES["ingress"]["exposePages"] is True
    assert VALUES["config"]["web"]["page_secret"] == "${FEEDBOT_PAGE_SECRET:-}"
    assert VALUES["config"]["web"]["page_links"] == "signed"
    secret = (TEMPLATES / "secret.yaml").read_text()
    generated = secret.split("{{- if and .Values.secrets.generatePageSecret")[1]
    assert "not .Values.secrets.values.FEEDBOT_PAGE_SECRET" in generated
    assert "randAlphaNum 48" in generated and 'lookup "v1" "Secret"' in generated
    assert "FEEDBOT_PAGE_SECRET: {{ $pageSecret | quote }}" in generated
    from feedbot.config import settings_from_mapping

    env = {"FEEDBOT_DATABASE_URL": "postgresql+psycopg://feedbot@db/feedbot"}
    page_secret = "generated-by-the-chart-0123456789"
    settings = settings_from_mapping(VALUES["config"], {**env, "FEEDBOT_PAGE_SECRET": page_secret})
    assert settings.web.page_secret == page_secret
    assert errors(merged(VALUES, {"config": {"web": {"page_links": "public"}}}))


def test_the_readmes_secret_holds_what_an_existing_secret_must() -> None:
    # The README's example uses secrets.existingSecret, and the chart generates neither the
    # ingest token nor the pages' secret then: without them /v1/traces takes spans from anyone
    # in the cluster and every page link is refused.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = re.search(r"kubectl create secret generic feedbot-secrets(?:.*\\\n)*.*\n", readme)
    assert command is not None
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    example = yaml.safe_load((CHART / "ci" / "ha-postgres-values.yaml").read_text("utf-8"))
    assert example["secrets"]["existingSecret"] == "feedbot-secrets"
    assert values["secrets"]["generateIngestToken"] and values["secrets"]["generatePageSecret"]
    for key in ("FEEDBOT_INGEST_TOKEN", "FEEDBOT_PAGE_SECRET", "FEEDBOT_WEBHOOK_SECRET"):
        assert f"--from-literal={key}=" in command.group(), key
