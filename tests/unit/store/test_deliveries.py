"""A delivery id is claimed once: what Socket Mode relies on to handle a redelivery once."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from feedbot.store.queries import claim_delivery

NOW = datetime(2026, 11, 24, 10, tzinfo=UTC)


def test_the_first_claim_wins_and_later_ones_lose(db_session: Session) -> None:
    assert claim_delivery(db_session, source="slack", delivery_id="slash_commands:t1", now=NOW)
    db_session.commit()
    assert not claim_delivery(db_session, source="slack", delivery_id="slash_commands:t1", now=NOW)
    # Another id, or the same id from another source, is another delivery.
    assert claim_delivery(db_session, source="slack", delivery_id="interactive:t1", now=NOW)
    assert claim_delivery(db_session, source="github", delivery_id="slash_commands:t1", now=NOW)
