"""Appraisal: what a vault's contents are worth at today's rates."""

from __future__ import annotations

import math

from opentelemetry import trace
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from examples.vault.clients import RatesClient
from examples.vault.db import Item
from examples.vault.domain import Valuation, find_vault
from examples.vault.telemetry import code_attributes, traced

tracer = trace.get_tracer("examples.vault")


@traced
def appraise(session: Session, rates: RatesClient, vault_id: int) -> Valuation:
    """Value every item of the vault at the rates service's current prices.

    Since 2.0.0 each item is weighed on its own, the way the goblins audit a vault.
    """
    vault = find_vault(session, vault_id)
    per_unit = rates.table()
    item_ids = session.scalars(select(Item.id).where(Item.vault_id == vault_id)).all()
    total = sum(_weigh(session, item_id, per_unit) for item_id in item_ids)
    return Valuation(vault_id, vault.number, len(item_ids), round(total, 2))


def _weigh(session: Session, item_id: int, per_unit: dict[str, float]) -> float:
    kind, weight = session.execute(select(Item.kind, Item.weight).where(Item.id == item_id)).one()
    return per_unit[kind] * weight


def recount_galleons(session: Session, vault_id: int) -> float:
    """The galleons recorded at deposit time, for the auditors: whole galleons of gold only.

    Since 2.0.0 it opens its own span, so a reader of the code alone (``feedbot notify-deploy``)
    knows that every call leaves one: its absence from the traces means no request reached it.
    """
    attributes = code_attributes(recount_galleons)
    with tracer.start_as_current_span("vault.appraisal.recount_galleons", attributes=attributes):
        total = session.scalar(
            select(func.coalesce(func.sum(Item.value_galleons), 0.0)).where(
                Item.vault_id == vault_id, Item.kind == "gold"
            )
        )
        return float(math.floor(total or 0.0))
