"""Attribute values a span group's spans may differ by, kept per span for contrast; pure.

The analysis asks which attribute values the slow or failing spans of a group share that the
rest do not (:mod:`feedbot.analysis.contrast`, after Honeycomb's BubbleUp). For that each span
of a group keeps, aligned with its duration, the *labels* it carried: the values of a bounded
set of low-cardinality attributes that plausibly explain a difference (:func:`is_label_key`):

* who and where: ``tenant``, ``tenant.id``, ``customer``, ``account``, ``org``, ``region``,
  ``zone``, ``shard``, ``plan``, ``tier``, ``cohort`` (any key with one of those words as a
  dotted or underscored part), ``cloud.region``, ``cloud.availability_zone``, ``host.name``,
  ``k8s.pod.name``, ``k8s.node.name`` (when set on spans);
* what was called: ``server.address``, ``peer.service``, ``net.peer.name``, ``rpc.service``,
  ``db.system`` / ``db.system.name``, ``db.name`` / ``db.namespace``, ``messaging.system``,
  ``messaging.destination.name``, ``feature_flag.*`` variants;
* the raw path a templated group came from: ``url.path``, ``http.target``.

Outcomes (status codes, ``error.type``) are left out: they describe how a span ended, not who or
what it served, and would trivially "explain" errors. Values are strings (integers written in
decimal), cut to :data:`MAX_VALUE_CHARS`.

:class:`LabelTally` interns each span's labels as one small integer per span. Bounds per group:
at most :data:`MAX_KEYS` keys (the first seen), :data:`MAX_VALUES` distinct values per key
(later values are written :data:`OTHER`) and :data:`MAX_SETS` distinct label sets (spans with a
set beyond that get the set where every key is :data:`OTHER`). Memory is therefore 4 bytes per
span plus at most ``MAX_SETS × MAX_KEYS`` (key, value) pairs per group.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

#: One span's labels: (key, value) pairs sorted by key.
Labels = tuple[tuple[str, str], ...]
MAX_KEYS = 16
MAX_VALUES = 20
MAX_SETS = 1024
MAX_VALUE_CHARS = 100
#: The value of a key past :data:`MAX_VALUES`, or of a span whose set was past :data:`MAX_SETS`.
OTHER = "(other)"
#: The value of a key a span did not carry.
MISSING = "(none)"

#: Semantic-convention keys read as labels (both generations).
LABEL_KEYS = frozenset(
    (
        "server.address",
        "peer.service",
        "net.peer.name",
        "rpc.service",
        "db.system",
        "db.system.name",
        "db.name",
        "db.namespace",
        "messaging.system",
        "messaging.destination.name",
        "messaging.destination",
        "cloud.region",
        "cloud.availability_zone",
        "host.name",
        "k8s.pod.name",
        "k8s.node.name",
        "url.path",
        "http.target",
        "feature_flag.variant",
        "feature_flag.result.variant",
    )
)
_WORDS = (
    "tenant|tenantid|tenant_id|customer|customer_id|account|account_id|org|org_id|organization"
    "|region|zone|shard|plan|tier|cohort"
)
_CUSTOM = re.compile(rf"(?:^|[._])(?:{_WORDS})(?:$|[._])", re.IGNORECASE)
_OUTCOME = re.compile(r"status|error|exception", re.IGNORECASE)
_known: dict[str, bool] = {}


def is_label_key(key: str) -> bool:
    """Whether an attribute ``key`` is kept as a label (see the module docstring)."""
    found = _known.get(key)
    if found is None:
        found = key in LABEL_KEYS or (
            _CUSTOM.search(key) is not None and _OUTCOME.search(key) is None
        )
        if len(_known) < 65_536:  # Keys are few; a stream of novel keys is not remembered.
            _known[key] = found
    return found


def labels_of(attributes: Mapping[str, Any]) -> Labels:
    """The labels among a span's ``attributes``: string, integer or boolean values only."""
    found = []
    for key, value in attributes.items():
        if not is_label_key(key):
            continue
        if isinstance(value, str):
            found.append((key, value[:MAX_VALUE_CHARS]))
        elif isinstance(value, bool | int):
            found.append((key, str(value).lower() if isinstance(value, bool) else str(value)))
    return tuple(sorted(found))


@dataclass(eq=False)
class LabelTally:
    """One group's labels so far: a set code per span and the sets (see the module bounds)."""

    codes: array[int] = field(default_factory=lambda: array("i"))
    sets: dict[Labels, int] = field(default_factory=dict)
    values: dict[str, set[str]] = field(default_factory=dict)

    def add(self, labels: Labels) -> None:
        """Note one span's labels (in span order, alongside its duration)."""
        code = self.sets.get(labels)
        if code is None:
            code = self.intern(labels)
        self.codes.append(code)

    def intern(self, labels: Labels) -> int:
        """The code of ``labels`` within the bounds, made when first seen."""
        bounded = tuple(self._bounded(labels))
        code = self.sets.get(bounded)
        if code is None:
            if len(self.sets) >= MAX_SETS:
                overflow = tuple((key, OTHER) for key in sorted(self.values))
                code = self.sets.get(overflow)
                if code is None:
                    code = self.sets[overflow] = len(self.sets)
                return code
            code = self.sets[bounded] = len(self.sets)
        return code

    def _bounded(self, labels: Labels) -> Iterable[tuple[str, str]]:
        for key, value in labels:
            seen = self.values.get(key)
            if seen is None:
                if len(self.values) >= MAX_KEYS:
                    continue
                seen = self.values[key] = set()
            if value not in seen:
                if len(seen) >= MAX_VALUES:
                    value = OTHER
                else:
                    seen.add(value)
            yield key, value

    def merge(self, theirs: LabelTally) -> None:
        """Add another tally's spans after this one's."""
        ordered = sorted(theirs.sets.items(), key=lambda item: item[1])
        remap = np.array([self.intern(labels) for labels, _ in ordered] or [0], np.int32)
        self.codes.frombytes(remap[np.frombuffer(theirs.codes, np.int32)].tobytes())

    def table(self) -> tuple[Labels, ...]:
        """The label sets, by code."""
        ordered = sorted(self.sets.items(), key=lambda item: item[1])
        return tuple(labels for labels, _ in ordered)


def label_columns(
    sets: tuple[Labels, ...], codes: npt.NDArray[np.int32]
) -> dict[str, tuple[tuple[str, ...], npt.NDArray[np.int32]]]:
    """Per key, its values and each span's value index (``MISSING`` where a span had none).

    Args:
        sets: :attr:`~feedbot.spans.model.SpanGroupStats.label_sets`.
        codes: :attr:`~feedbot.spans.model.SpanGroupStats.labels`, one per span.
    """
    keys = sorted({key for labels in sets for key, _ in labels})
    columns: dict[str, tuple[tuple[str, ...], npt.NDArray[np.int32]]] = {}
    for key in keys:
        values: dict[str, int] = {MISSING: 0}
        per_set = np.array(
            [values.setdefault(dict(labels).get(key, MISSING), len(values)) for labels in sets],
            np.int32,
        )
        columns[key] = (tuple(values), per_set[codes])
    return columns
