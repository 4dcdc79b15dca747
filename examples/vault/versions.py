"""The two releases of the vault and how a process picks one.

``--version`` wins over ``VAULT_VERSION``; 1.0.0 is the default. Everything outside ``v1/`` and
``v2/`` is shared, so ``diff -r examples/vault/v1 examples/vault/v2`` is the whole release.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    # Only for the protocols: importing this module (as run.py does) must stay light.
    from sqlalchemy.orm import Session

    from examples.vault.clients import RatesClient
    from examples.vault.db import Item
    from examples.vault.domain import NewItem, Valuation

VERSIONS = {"1.0.0": "examples.vault.v1", "2.0.0": "examples.vault.v2"}
DEFAULT_VERSION = "1.0.0"
ENV = "VAULT_VERSION"


class AppraisalModule(Protocol):
    appraise: Callable[[Session, RatesClient, int], Valuation]
    recount_galleons: Callable[[Session, int], float]


class DepositsModule(Protocol):
    deposit: Callable[[Session, RatesClient, int, NewItem], Item]


@dataclass(frozen=True)
class Release:
    """One version's modules."""

    version: str
    appraisal: AppraisalModule
    deposits: DepositsModule


def resolve(flag: str | None = None) -> str:
    """The version to run: ``flag``, else ``VAULT_VERSION``, else 1.0.0.

    Raises:
        ValueError: the version is not one of :data:`VERSIONS`.
    """
    version = flag or os.environ.get(ENV) or DEFAULT_VERSION
    if version not in VERSIONS:
        known = ", ".join(VERSIONS)
        raise ValueError(f"version {version!r} is unknown; choose one of {known}")
    return version


def from_arguments(parser: argparse.ArgumentParser, flag: str | None) -> str:
    """:func:`resolve` for a command line: an unknown version is a usage error (exit 2)."""
    try:
        return resolve(flag)
    except ValueError as exc:
        parser.error(str(exc))


def load(version: str) -> Release:
    """Import the modules of ``version`` (one of :data:`VERSIONS`)."""
    package = VERSIONS[version]
    return Release(
        version=version,
        appraisal=cast(AppraisalModule, _module(f"{package}.appraisal")),
        deposits=cast(DepositsModule, _module(f"{package}.deposits")),
    )


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)
