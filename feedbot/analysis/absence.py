"""Why a release matched no span, from what the store holds of its service (pure, no I/O).

"Has not served traffic yet" is only one reason. A deploy tagged ``production`` whose spans say
``prod``, or an SDK that never set ``service.version``, look the same to the query; when the
backend surveyed its store (:class:`~feedbot.spans.model.Elsewhere`) the report names the cause
and the values seen.
"""

from __future__ import annotations

from collections import Counter

from feedbot.spans.model import Elsewhere

#: Values listed per attribute; the rest are counted.
SHOWN = 4


def sentence(elsewhere: Elsewhere | None) -> str:
    """One sentence on why no span of the new version was found."""
    plain = "No span of the new version was found in the window: it has not served traffic yet."
    if elsewhere is None:
        return plain
    query, spans = elsewhere.query, elsewhere.spans
    what = f"No span of {query.service} {query.version}"
    where = f" in {query.environment}" if query.environment else ""
    if not spans:
        return (
            f"{what}{where}, nor of any other version or environment of {query.service}, in "
            "the window: it has not served traffic yet, or its spans do not reach this store."
        )
    environments = Counter[str | None]()
    versions = Counter[str | None]()
    for env, version, n in spans:
        environments[env] += n
        versions[version] += n
    return f"{what}{where}; the store has spans of this service in " + _held(
        query.environment, query.version, environments, versions
    )


def _held(
    environment: str | None,
    version: str,
    environments: Counter[str | None],
    versions: Counter[str | None],
) -> str:
    text = (
        f"environment(s) {_values(environments, 'no environment')} and version(s) "
        f"{_values(versions, 'no service.version')}"
    )
    others = [e for e in environments if e is not None and e != environment]
    advice = []
    if version in versions and others and environment:
        other = others[0]
        advice.append(
            f"set the deploy's environment to {other}, or set "
            f"deployment.environment.name={environment} on the spans"
        )
    unversioned = versions.get(None, 0)
    if unversioned:
        advice.append(
            f"spans of the service have no service.version: {unversioned:,} in the window; set "
            f"it in the SDK (OTEL_RESOURCE_ATTRIBUTES=service.version={version})"
        )
    if not advice:
        advice.append(f"{version} has not served traffic yet, or its spans carry another version")
    return f"{text} — {'; '.join(advice)}."


def _values(counts: Counter[str | None], missing: str) -> str:
    ranked = counts.most_common()
    shown = [f"{missing if v is None else v} ({n:,})" for v, n in ranked[:SHOWN]]
    more = f" and {len(ranked) - SHOWN} more" if len(ranked) > SHOWN else ""
    return ", ".join(shown) + more
