"""What both versions share: the request and result shapes, the errors, and vault look-ups.

Errors form a small tree under :class:`VaultError`; each carries the HTTP status the API answers
with, so the API maps them in one handler and a version may add its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from examples.vault.db import Item, Vault
from examples.vault.telemetry import traced

Kind = Literal["gold", "silver", "jewel", "artifact"]
KINDS: tuple[Kind, ...] = ("gold", "silver", "jewel", "artifact")
#: Prime to 9900, so vault numbers do not repeat for the first 9900 vaults nor reveal the count.
NUMBER_STRIDE = 7919


class VaultError(Exception):
    """Root of the vault's errors; ``status_code`` is what the API answers."""

    status_code = 400


class UnknownVault(VaultError):
    status_code = 404

    def __init__(self, vault_id: int) -> None:
        super().__init__(f"vault {vault_id}: no such vault")


@dataclass(frozen=True)
class NewItem:
    """An item handed over the counter for deposit."""

    name: str
    kind: Kind
    weight: float


@dataclass(frozen=True)
class Valuation:
    """What a vault is worth today, at the rates service's prices."""

    vault_id: int
    vault_number: int | None
    items: int
    total_galleons: float


@dataclass(frozen=True)
class VaultSummary:
    id: int
    number: int | None
    owner: str
    items: int


@traced
def open_vault(session: Session, owner: str) -> Vault:
    """Open a vault; its number (100 to 9999) is spread from its id so it never collides."""
    vault = Vault(owner=owner)
    session.add(vault)
    session.flush()
    vault.number = 100 + vault.id * NUMBER_STRIDE % 9900
    session.commit()
    return vault


@traced
def find_vault(session: Session, vault_id: int) -> Vault:
    """The vault, or :class:`UnknownVault`."""
    vault = session.get(Vault, vault_id)
    if vault is None:
        raise UnknownVault(vault_id)
    return vault


@traced
def list_vaults(session: Session, limit: int = 100) -> list[VaultSummary]:
    """Vaults with how many items each holds, in one grouped query."""
    statement = (
        select(Vault.id, Vault.number, Vault.owner, func.count(Item.id))
        .outerjoin(Item, Item.vault_id == Vault.id)
        .group_by(Vault.id, Vault.number, Vault.owner)
        .order_by(Vault.id)
        .limit(limit)
    )
    return [VaultSummary(*row) for row in session.execute(statement)]
