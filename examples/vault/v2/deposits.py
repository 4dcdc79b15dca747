"""Deposits: an item goes into a vault, valued at today's rate."""

from __future__ import annotations

import hashlib

from sqlalchemy.orm import Session

from examples.vault.clients import RatesClient
from examples.vault.db import Item
from examples.vault.domain import NewItem, VaultError, find_vault
from examples.vault.telemetry import traced

#: Rounds of the goblin seal; a seal is meant to be slow to forge.
SEAL_ROUNDS = 60_000


class GoblinRateLimitError(VaultError):
    """The goblins ration dragon-goods valuations; the depositor must come back later."""

    status_code = 429


@traced
def deposit(session: Session, rates: RatesClient, vault_id: int, item: NewItem) -> Item:
    """Store ``item`` in the vault, valued in galleons at the current rate, less insurance.

    Since 2.0.0 every deposit is insured and sealed, and dragon goods are rationed.
    """
    vault = find_vault(session, vault_id)
    if "dragon" in item.name.lower():
        raise GoblinRateLimitError(
            f"item {item.name!r}: dragon goods are rationed, come back later"
        )
    rate = rates.rate(item.kind)
    premium = rates.insurance(item.kind, item.weight)
    seal = goblin_seal(vault.id, item.name)
    stored = Item(
        vault_id=vault.id,
        name=f"{item.name} [{seal}]",
        kind=item.kind,
        weight=item.weight,
        value_galleons=round(rate * item.weight - premium, 2),
    )
    session.add(stored)
    session.commit()
    return stored


@traced
def goblin_seal(vault_id: int, name: str) -> str:
    """A seal over the item's name that only Gringotts can make."""
    digest = hashlib.pbkdf2_hmac("sha256", name.encode(), f"vault-{vault_id}".encode(), SEAL_ROUNDS)
    return digest.hex()[:12]
