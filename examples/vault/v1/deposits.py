"""Deposits: an item goes into a vault, valued at today's rate."""

from __future__ import annotations

from sqlalchemy.orm import Session

from examples.vault.clients import RatesClient
from examples.vault.db import Item
from examples.vault.domain import NewItem, find_vault
from examples.vault.telemetry import traced


@traced
def deposit(session: Session, rates: RatesClient, vault_id: int, item: NewItem) -> Item:
    """Store ``item`` in the vault, valued in galleons at the current rate."""
    vault = find_vault(session, vault_id)
    rate = rates.rate(item.kind)
    stored = Item(
        vault_id=vault.id,
        name=item.name,
        kind=item.kind,
        weight=item.weight,
        value_galleons=round(rate * item.weight, 2),
    )
    session.add(stored)
    session.commit()
    return stored
