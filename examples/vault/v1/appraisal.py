"""Appraisal: what a vault's contents are worth at today's rates."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from examples.vault.clients import RatesClient
from examples.vault.db import Item, Vault
from examples.vault.domain import UnknownVault, Valuation
from examples.vault.telemetry import traced


@traced
def appraise(session: Session, rates: RatesClient, vault_id: int) -> Valuation:
    """Value every item of the vault at the rates service's current prices."""
    per_unit = rates.table()
    rows = session.execute(
        select(Vault.number, Item.kind, Item.weight)
        .outerjoin(Item, Item.vault_id == Vault.id)
        .where(Vault.id == vault_id)
    ).all()
    if not rows:
        raise UnknownVault(vault_id)
    items = [(kind, weight) for _, kind, weight in rows if kind is not None]
    total = sum(per_unit[kind] * weight for kind, weight in items)
    return Valuation(vault_id, rows[0].number, len(items), round(total, 2))


@traced
def recount_galleons(session: Session, vault_id: int) -> float:
    """The galleons recorded at deposit time, for the auditors."""
    total = session.scalar(
        select(func.coalesce(func.sum(Item.value_galleons), 0.0)).where(Item.vault_id == vault_id)
    )
    return round(float(total or 0.0), 2)
