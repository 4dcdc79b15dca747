"""Check replies in Block Kit: blocks on the reply and the parent, broadcasts, acks and mutes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from slack_sdk.models.blocks import Block
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from feedbot.checks.register import register_release
from feedbot.checks.runner import CheckRunner
from feedbot.clock import FixedClock
from feedbot.spans.model import ExceptionSeen, ReleaseData, SpanQuery
from feedbot.store import acknowledgements as state
from feedbot.store.models import Delivery
from tests.factories import DEPLOYED, event, settings
from tests.unit.analysis.synth import release, routes

CHANNEL = "#vault"
NEW: list[int] = []  # the id of the release each setup() registered last


class SyntheticBackend:
    """1.4.2 is slower on GET /r1 and raises a KeyError never seen in 1.4.1, 20 times."""

    name = "synthetic"

    def collect(self, query: SpanQuery) -> ReleaseData:
        rng = np.random.default_rng(7 if query.version == "1.4.1" else 8)
        specs = routes(4, 2000)
        if query.version == "1.4.1":
            return release(rng, specs)
        specs[1] = replace(specs[1], ratio=1.3)
        data = release(rng, specs)
        groups = [
            replace(g, exceptions=(ExceptionSeen("KeyError", 20, "x", "ef" * 16),))
            if g.name == "GET /r2"
            else g
            for g in data.groups
        ]
        return replace(data, groups=groups)


def conf(**service: Any) -> Any:
    return settings(
        checks={"after": ["15m", "1h"]},
        traces={"ui_url": "https://jaeger.acme.example"},
        services={"vault-service": {"channel": CHANNEL, **service}},
    )


def setup(
    sessions: sessionmaker[Session], owner_slack: str = "U123", **service: Any
) -> CheckRunner:
    with sessions() as session:
        old = event(version="1.4.1", commit="old", deployed_at=DEPLOYED - timedelta(days=1))
        register_release(session, old, settings=conf(**service), now=DEPLOYED)
        new = event(author=replace(event().author, slack=owner_slack))
        NEW.append(
            register_release(session, new, settings=conf(**service), now=DEPLOYED).release_id
        )
    return CheckRunner(
        sessions=sessions,
        backend=SyntheticBackend(),  # type: ignore[arg-type]
        settings=conf(**service),
        clock=FixedClock(DEPLOYED + timedelta(hours=2)),
        worker="w1",
    )


def rows(session: Session, kind: str) -> list[Delivery]:
    session.expire_all()
    stmt = select(Delivery).where(Delivery.kind == kind).order_by(Delivery.id)
    return list(session.scalars(stmt))


def valid(blocks: list[dict[str, Any]]) -> bool:
    for raw in blocks:
        Block.parse(raw).validate_json()  # type: ignore[union-attr]
    return 0 < len(blocks) <= 50


def test_replies_and_status_carry_blocks_and_alarms_go_to_the_channel_once(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    assert setup(db_sessions).run_due() == 2
    replies = [r for r in rows(db_session, "reply") if r.check_id]
    assert len(replies) == 2 and all(valid(r.blocks) for r in replies)
    assert replies[0].blocks[0]["text"]["text"].startswith("*🔴 regressed* · +15m check of")
    assert not any(r.broadcast for r in replies)  # the owner's thread is a DM
    [post] = rows(db_session, "broadcast")  # the second check found nothing new to broadcast
    assert post.recipient == CHANNEL and post.release_id is None and valid(post.blocks)
    assert post.key.endswith(":broadcast") and "KeyError" in str(post.blocks)
    assert "No change" not in str(post.blocks)  # only the alarms leave the thread
    statuses = rows(db_session, "status")
    assert all(valid(s.blocks) for s in statuses)
    assert "all 2 checks ran" in statuses[-1].blocks[-1]["elements"][0]["text"]


def test_an_owner_thread_in_the_service_channel_is_broadcast_with_reply_broadcast(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    setup(db_sessions, owner_slack=CHANNEL).run_due()
    first = [r for r in rows(db_session, "reply") if r.check_id][0]
    assert first.recipient == CHANNEL and first.broadcast
    assert rows(db_session, "broadcast") == []


@pytest.mark.parametrize("service", [{"broadcast": False}, {"channel": None}])
def test_broadcast_is_configurable_per_service(
    db_sessions: sessionmaker[Session], db_session: Session, service: dict[str, Any]
) -> None:
    setup(db_sessions, **service).run_due()
    assert rows(db_session, "broadcast") == []


def test_a_muted_service_gets_no_replies_and_acknowledged_findings_are_not_raised(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    runner = setup(db_sessions)
    with db_sessions() as session:
        state.mute(
            session, service="vault-service", span=timedelta(hours=3), user_id="U1", now=DEPLOYED
        )
        session.commit()
    runner.run_due()
    assert [r for r in rows(db_session, "reply") if r.check_id] == []
    assert rows(db_session, "broadcast") == []
    assert rows(db_session, "status")  # the parent's status is still kept current


def test_acknowledged_alarms_are_neither_shown_nor_broadcast(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    runner = setup(db_sessions)
    with db_sessions() as session:
        for key in ("latency_regression|GET /r1||||", "new_error_type|GET /r2|||KeyError|"):
            assert state.acknowledge(
                session, release_id=NEW[-1], finding_key=key, user_id="U1", now=DEPLOYED
            )
        assert not state.acknowledge(
            session, release_id=NEW[-1], finding_key=key, user_id="U2", now=DEPLOYED
        )
        session.commit()
    runner.run_due()
    reply = [r for r in rows(db_session, "reply") if r.check_id][0]
    assert "KeyError" not in str(reply.blocks) and "marked expected" in str(reply.blocks)
    assert rows(db_session, "broadcast") == []


def test_the_second_reply_says_what_changed_and_repeats_no_button(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    setup(db_sessions).run_due()  # both looks see the same spans: nothing changes in between
    first, second = [r for r in rows(db_session, "reply") if r.check_id]
    buttons = [b["accessory"]["text"]["text"] for b in first.blocks if "accessory" in b]
    assert buttons == ["Expected", "Expected"]  # the regression and the KeyError
    assert not any("accessory" in b for b in second.blocks) and valid(second.blocks)
    head = second.blocks[0]["text"]["text"]
    assert head.endswith("+1h check of vault-service 1.4.2 → production · since the +15m check: "
                         "2 still there")  # fmt: skip
    still = second.blocks[1]["elements"][0]["text"]
    assert still == (
        "Still there, as in the +15m check: `GET /r1` is 25% slower; "
        "`GET /r2` raises `KeyError`, new in this version"
    )
    assert len(str(second.blocks)) < len(str(first.blocks))
