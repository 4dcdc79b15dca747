"""register_releases: several deploys in one transaction, each with its own outcome.

The web app hands the registration thread every deploy waiting at once (group commit); these
tests compose the batches by hand, so what shares a transaction is certain.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from feedbot.checks.register import Registration, register_release, register_releases
from feedbot.releases.event import Change
from feedbot.store import registration
from feedbot.store.models import Check, Delivery, Release, WebhookDelivery
from tests.factories import DEPLOYED, event, settings

NOW = DEPLOYED + timedelta(minutes=5)
KW = {"settings": settings(), "now": NOW}


def count(session: Session, model: type) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def ok(outcomes: list[Registration | Exception]) -> list[Registration]:
    for outcome in outcomes:
        assert isinstance(outcome, Registration), outcome
    return outcomes  # type: ignore[return-value]


def test_a_batch_registers_each_deploy_as_one_at_a_time_would(db_session: Session) -> None:
    at = DEPLOYED
    batch = [
        event(service="a", version="1", commit="a1", deployed_at=at),
        event(service="b", version="1", commit="b1", deployed_at=at),
        event(service="a", version="2", commit="a2", deployed_at=at + timedelta(minutes=1)),
        event(service="a", version="3", commit="a3", deployed_at=at + timedelta(minutes=2)),
        # A rollback to a version deployed earlier in the same batch.
        event(service="a", version="2", commit="a2b", deployed_at=at + timedelta(minutes=3)),
    ]
    regs = ok(register_releases(db_session, batch, **KW))
    assert all(r.created and r.checks == 4 for r in regs)
    db_session.expire_all()
    by_id = {r.id: r for r in db_session.scalars(select(Release))}
    a1, b1, a2, a3, a2b = (by_id[r.release_id] for r in regs)
    assert [r.state for r in (a1, b1, a2, a3, a2b)] == [
        "superseded",
        "active",
        "superseded",
        "superseded",
        "active",
    ]
    assert (a1.superseded_by_id, a2.superseded_by_id, a3.superseded_by_id) == (a2.id, a3.id, a2b.id)
    assert (a2.previous_release_id, a3.previous_release_id, a2b.previous_release_id) == (
        a1.id,
        a2.id,
        a3.id,
    )
    assert b1.previous_release_id is None
    assert a2b.is_rollback and not a3.is_rollback
    pending = db_session.scalars(select(Check.release_id).where(Check.state == "pending")).all()
    assert sorted(set(pending)) == sorted([b1.id, a2b.id])
    # A parent per release; a "superseded" reply and a final status per superseded release.
    kinds = db_session.execute(select(Delivery.kind, func.count()).group_by(Delivery.kind)).all()
    assert dict(kinds) == {"parent": 5, "reply": 3, "status": 3}


def test_duplicates_within_one_batch_are_one_release(db_session: Session) -> None:
    first = event(service="a", version="1", commit="a1", delivery_id="d-1")
    batch = [
        first,
        event(service="a", version="1", commit="a1", delivery_id="d-1"),  # a redelivery
        event(service="a", version="1", commit="a1"),  # the same identity, no delivery id
        event(service="a", version="1", commit="a1", delivery_id="d-2"),  # the same, resent
        event(service="b", version="1", commit="b1", delivery_id="d-3"),
    ]
    regs = ok(register_releases(db_session, batch, **KW))
    assert [r.created for r in regs] == [True, False, False, False, True]
    assert len({r.release_id for r in regs[:4]}) == 1
    assert [r.checks for r in regs] == [4] * 5
    assert count(db_session, Release) == 2
    assert count(db_session, Delivery) == 2  # one parent each, nothing queued twice
    deliveries = db_session.execute(select(WebhookDelivery.delivery_id, WebhookDelivery.release_id))
    assert dict(deliveries.all()) == {
        "d-1": regs[0].release_id,
        "d-2": regs[0].release_id,
        "d-3": regs[4].release_id,
    }
    # And again, in a later batch: nothing new.
    again = ok(register_releases(db_session, batch, **KW))
    assert [r.release_id for r in again] == [r.release_id for r in regs]
    assert not any(r.created for r in again)
    assert count(db_session, Release) == 2 and count(db_session, Delivery) == 2


def test_a_batch_after_single_registrations_supersedes_them(db_session: Session) -> None:
    old = register_release(db_session, event(service="a", version="0", commit="a0"), **KW)
    regs = ok(
        register_releases(
            db_session,
            [
                event(service="a", version="1", commit="a1", deployed_at=DEPLOYED),
                event(service="a", version="0", commit="a0"),  # the old one again
            ],
            **KW,
        )
    )
    assert regs[0].created and regs[1] == Registration(old.release_id, False, 4)
    db_session.expire_all()
    superseded = db_session.get(Release, old.release_id)
    assert superseded is not None and superseded.superseded_by_id == regs[0].release_id


def poison(session: Session) -> None:
    """Make the database itself refuse any release of the service ``poison``."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            text(
                "CREATE TEMP TRIGGER poison BEFORE INSERT ON releases"
                " WHEN NEW.service = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
            )
        )
        session.commit()
        return
    session.execute(
        text(
            "CREATE FUNCTION pg_temp.poison() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN IF NEW.service = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF;"
            " RETURN NEW; END $$"
        )
    )
    session.execute(
        text(
            "CREATE TRIGGER poison BEFORE INSERT ON releases"
            " FOR EACH ROW EXECUTE FUNCTION pg_temp.poison()"
        )
    )
    session.commit()  # kept when the batch's transaction is rolled back


def test_one_deploy_the_database_refuses_fails_alone(db_session: Session) -> None:
    poison(db_session)
    batch = [
        event(service="a", version="1", commit="a1", delivery_id="d-1"),
        event(service="poison", version="1", commit="p1"),
        event(service="a", version="2", commit="a2", deployed_at=DEPLOYED + timedelta(seconds=1)),
        event(service="b", version="1", commit="b1"),
    ]
    outcomes = register_releases(db_session, batch, **KW)
    assert isinstance(outcomes[1], Exception) and "poisoned" in str(outcomes[1])
    good = ok([o for i, o in enumerate(outcomes) if i != 1])
    assert all(r.created for r in good)
    db_session.expire_all()
    services = db_session.execute(select(Release.service, Release.version, Release.state))
    assert sorted(services.all()) == [
        ("a", "1", "superseded"),
        ("a", "2", "active"),
        ("b", "1", "active"),
    ]
    assert count(db_session, WebhookDelivery) == 1
    assert count(db_session, Delivery) == 3 + 2  # three parents, a1's reply and status


@pytest.mark.parametrize("size", [1, 2, 70])
def test_many_services_and_their_next_versions_in_one_batch(db_session: Session, size: int) -> None:
    batch = [
        event(service=f"s{i % 7}", version=f"1.{i}", commit=f"c{i}", deployed_at=DEPLOYED)
        for i in range(size)
    ]
    regs = ok(register_releases(db_session, batch, **KW))
    assert len({r.release_id for r in regs}) == size
    active = db_session.scalars(select(Release.version).where(Release.state == "active")).all()
    # Deployed at the same moment, the one registered last of each service is the newest.
    assert sorted(active) == sorted(f"1.{i}" for i in range(max(0, size - 7), size))
    assert count(db_session, Release) == size


def test_more_services_than_one_statement_looks_up_are_looked_up_in_several(
    db_session: Session,
) -> None:
    registration.warm_registration_contexts(db_session)  # runs every statement once: finds nothing
    assert count(db_session, Release) == 0
    services = registration.CONTEXT_KEYS + 9
    first = [event(service=f"s{i}", version="1", commit=f"a{i}") for i in range(services)]
    ok(register_releases(db_session, first, **KW))
    later = DEPLOYED + timedelta(minutes=1)
    second = [
        event(service=f"s{i}", version="2", commit=f"b{i}", deployed_at=later)
        for i in range(services)
    ]
    regs = ok(register_releases(db_session, [*second, *first], **KW))
    assert [r.created for r in regs] == [True] * services + [False] * services
    db_session.expire_all()
    states = dict(db_session.execute(select(Release.commit, Release.state)).all())
    assert all(states[f"a{i}"] == "superseded" for i in range(services))
    assert all(states[f"b{i}"] == "active" for i in range(services))


def test_each_release_of_a_batch_gets_its_own_changes_checks_and_delivery_id(
    db_session: Session,
) -> None:
    # The releases go in as one INSERT … RETURNING and their children by the ids it returns:
    # children attached by position would land on the wrong release if the ids came back in
    # another order.
    batch = [
        event(
            service=f"s{i}",
            version=f"1.{i}",
            commit=f"c{i}",
            changes=(Change(file=f"f{i}.py", functions=(f"m{i}.fn",), lines=((i, i + 1),)),),
            delivery_id=f"d-{i}",
        )
        for i in range(12)
    ]
    regs = ok(register_releases(db_session, batch, **KW))
    db_session.expire_all()
    for i, reg in enumerate(regs):
        release = db_session.get(Release, reg.release_id)
        assert release is not None and release.commit == f"c{i}"
        assert [(c.file, c.functions, c.lines) for c in release.changes] == [
            (f"f{i}.py", [f"m{i}.fn"], [[i, i + 1]])
        ]
        assert len(release.checks) == reg.checks == 4
        assert all(c.state == "pending" and c.attempts == 0 for c in release.checks)
    delivered = db_session.execute(select(WebhookDelivery.delivery_id, WebhookDelivery.release_id))
    assert dict(delivered.all()) == {f"d-{i}": reg.release_id for i, reg in enumerate(regs)}


def test_a_deploy_that_arrives_late_follows_the_newest_one_deployed_before_it(
    db_session: Session,
) -> None:
    # v1 is superseded by v2 already; v1.5, deployed between them but sent last, follows v1
    # (the newest deployed before it, active or not), not nothing.
    at = DEPLOYED
    ok(
        register_releases(
            db_session, [event(service="a", version="1", commit="a1", deployed_at=at)], **KW
        )
    )
    v2 = event(service="a", version="2", commit="a2", deployed_at=at + timedelta(minutes=2))
    ok(register_releases(db_session, [v2], **KW))
    late = event(service="a", version="1.5", commit="a15", deployed_at=at + timedelta(minutes=1))
    [reg] = ok(register_releases(db_session, [late], **KW))
    db_session.expire_all()
    v1 = db_session.scalars(select(Release).where(Release.commit == "a1")).one()
    release = db_session.get(Release, reg.release_id)
    assert v1.state == "superseded"
    assert release is not None and release.previous_release_id == v1.id
