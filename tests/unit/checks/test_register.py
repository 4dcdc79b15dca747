from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from slack_sdk.models.blocks import Block
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from feedbot import failpoints
from feedbot.checks.register import Registration, register_release
from feedbot.releases.event import Author, Change
from feedbot.store.db import make_engine
from feedbot.store.models import Check, Delivery, Release
from tests.factories import DEPLOYED, event, settings

NOW = DEPLOYED + timedelta(seconds=5)


def count(session: Session, model: type) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_registration_stores_release_changes_checks_and_the_parent_message(
    db_session: Session,
) -> None:
    reg = register_release(db_session, event(), settings=settings(), now=NOW)
    assert reg.created and reg.checks == 4
    release = db_session.get(Release, reg.release_id)
    assert release is not None
    assert release.owner == "U123" and release.owner_reason == "author.slack"
    assert release.changes[0].functions == ["vault.appraisal.appraise"]
    assert release.changes[0].lines == [[10, 42]]
    assert [c.due_at - DEPLOYED for c in release.checks] == [
        timedelta(minutes=15),
        timedelta(hours=1),
        timedelta(hours=4),
        timedelta(hours=24),
    ]
    parent = db_session.scalars(select(Delivery)).one()
    assert parent.kind == "parent" and parent.recipient == "U123"
    assert "vault-service 1.4.2 → production" in parent.text
    assert "+15m, +1h, +4h, +1d" in parent.text
    # Block Kit too, with the plain text as the fallback.
    for raw in parent.blocks:
        Block.parse(raw).validate_json()  # type: ignore[union-attr]
    head = parent.blocks[0]["text"]["text"]
    assert head.startswith("*🚀 vault-service 1.4.2 → production, shipped by Bill*")
    assert "commit `c0ffee1`" in head and "“Cache vault appraisals”" in head
    assert "Status: 👀 watching (0 of 4 checks done)" in json.dumps(
        parent.blocks, ensure_ascii=False
    )


def test_the_traced_functions_of_a_change_are_stored(db_session: Session) -> None:
    change = Change("v/a.py", ("v.a.appraise", "v.a._weigh"), ((3, 9),), traced=("v.a.appraise",))
    reg = register_release(db_session, event(changes=(change,)), settings=settings(), now=NOW)
    db_session.expire_all()
    release = db_session.get(Release, reg.release_id)
    assert release is not None
    assert release.changes[0].traced == ["v.a.appraise"]
    assert release.changes[0].functions == ["v.a.appraise", "v.a._weigh"]


def test_the_parent_links_the_commit_on_github(db_session: Session) -> None:
    repo = event(repository="acme/vault", url="https://github.com/acme/vault/pull/9")
    register_release(db_session, repo, settings=settings(), now=NOW)
    head = db_session.scalars(select(Delivery)).one().blocks[0]["text"]["text"]
    assert "commit <https://github.com/acme/vault/commit/c0ffee1|c0ffee1>" in head
    assert "<https://github.com/acme/vault/pull/9|https://github.com/acme/vault/pull/9>" in head


def test_same_release_twice_is_one_release(db_session: Session) -> None:
    first = register_release(db_session, event(), settings=settings(), now=NOW)
    again = register_release(db_session, event(title="other"), settings=settings(), now=NOW)
    assert again.release_id == first.release_id and not again.created
    assert count(db_session, Release) == 1
    assert count(db_session, Check) == 4
    assert count(db_session, Delivery) == 1


def test_same_delivery_id_is_the_same_release(db_session: Session) -> None:
    first = register_release(
        db_session, event(source="github", delivery_id="d-1"), settings=settings(), now=NOW
    )
    again = register_release(
        db_session,
        event(source="github", delivery_id="d-1", commit="x"),
        settings=settings(),
        now=NOW,
    )
    assert again.release_id == first.release_id and not again.created
    assert count(db_session, Release) == 1


def test_newer_deploy_supersedes_pending_checks_and_says_so(db_session: Session) -> None:
    old = register_release(
        db_session, event(version="1.4.1", commit="a"), settings=settings(), now=NOW
    )
    new = register_release(
        db_session,
        event(version="1.4.2", commit="b", deployed_at=DEPLOYED + timedelta(hours=2)),
        settings=settings(),
        now=NOW + timedelta(hours=2),
    )
    old_release = db_session.get(Release, old.release_id)
    new_release = db_session.get(Release, new.release_id)
    assert old_release is not None and new_release is not None
    assert old_release.state == "superseded" and old_release.superseded_by_id == new.release_id
    assert {c.state for c in old_release.checks} == {"superseded"}
    assert new_release.previous_release_id == old.release_id
    assert not new_release.is_rollback
    note = db_session.scalars(
        select(Delivery).where(Delivery.key == f"release:{old.release_id}:superseded")
    ).one()
    assert note.release_id == old.release_id and "Superseded by 1.4.2" in note.text
    assert note.kind == "reply"
    # The old thread's status line ends in a final state instead of "watching" forever.
    status = db_session.scalars(select(Delivery).where(Delivery.kind == "status")).one()
    assert status.release_id == old.release_id
    final = "Status: ⏭ superseded by 1.4.2 before its checks ran"
    assert status.text.endswith(final) and status.blocks[-1]["elements"][0]["text"] == final


def test_same_release_again_with_an_earlier_deploy_time_is_one_release(
    db_session: Session,
) -> None:
    # The one read registration makes looks at releases deployed until the event's time, and
    # at the one with the event's identity whenever it was deployed.
    first = register_release(db_session, event(), settings=settings(), now=NOW)
    again = register_release(
        db_session,
        event(deployed_at=DEPLOYED - timedelta(hours=1)),
        settings=settings(),
        now=NOW,
    )
    assert again.release_id == first.release_id and not again.created
    assert count(db_session, Release) == 1
    assert count(db_session, Delivery) == 1


def test_a_version_deployed_before_is_a_rollback_and_only_active_ones_are_superseded(
    db_session: Session,
) -> None:
    def deploy(version: str, commit: str, hours: int) -> int:
        at = DEPLOYED + timedelta(hours=hours)
        reg = register_release(
            db_session,
            event(version=version, commit=commit, deployed_at=at),
            settings=settings(),
            now=at,
        )
        return reg.release_id

    blue = deploy("blue", "1", 0)
    green = deploy("green", "2", 1)
    late = deploy("red", "4", -1)  # registered late: deployed before both, supersedes neither
    back = deploy("blue", "3", 2)
    release = db_session.get(Release, back)
    assert release is not None and release.is_rollback
    assert release.previous_release_id == green
    states = {r.id: r.state for r in db_session.scalars(select(Release))}
    assert states == {blue: "superseded", green: "superseded", late: "superseded", back: "active"}
    notes = db_session.scalars(select(Delivery.release_id).where(Delivery.kind == "reply")).all()
    assert set(notes) == {blue, green, late} and len(notes) == 3


def test_deploying_an_older_version_is_a_rollback(db_session: Session) -> None:
    register_release(db_session, event(version="1.4.2", commit="b"), settings=settings(), now=NOW)
    back = register_release(
        db_session,
        event(version="1.4.1", commit="a", deployed_at=DEPLOYED + timedelta(hours=1)),
        settings=settings(),
        now=NOW,
    )
    release = db_session.get(Release, back.release_id)
    assert release is not None and release.is_rollback
    parent = db_session.scalars(
        select(Delivery).where(Delivery.release_id == back.release_id, Delivery.kind == "parent")
    ).one()
    assert "(rollback)" in parent.text


def test_owner_from_people_then_lazy_email_lookup_then_service_owners(
    db_session: Session,
) -> None:
    conf = settings(
        people=[{"github": "bill", "slack": "UBILL"}],
        services={"vault-service": {"owners": ["UOWNER"]}},
    )
    by_people = register_release(
        db_session, event(author=Author(github="Bill"), commit="1"), settings=conf, now=NOW
    )
    by_email = register_release(
        db_session, event(author=Author(email="x@acme.example"), commit="2"), settings=conf, now=NOW
    )
    nobody = register_release(
        db_session, event(author=Author(), commit="3"), settings=conf, now=NOW
    )
    owners = {r.id: (r.owner, r.owner_reason) for r in db_session.scalars(select(Release))}
    assert owners[by_people.release_id] == ("UBILL", "people[]")
    assert owners[by_email.release_id] == ("email:x@acme.example|UOWNER", "users.lookupByEmail")
    assert owners[nobody.release_id] == ("UOWNER", "services.vault-service.owners")


def test_a_release_nobody_owns_is_a_warning_on_slack_and_none_on_the_console(
    db_session: Session,
) -> None:
    slack = settings(slack={"bot_token": "xoxb-t", "signing_secret": "s"})
    on_slack = register_release(
        db_session, event(author=Author(name="Ann"), commit="1"), settings=slack, now=NOW
    )
    on_console = register_release(
        db_session, event(author=Author(name="Ann"), commit="2"), settings=settings(), now=NOW
    )
    assert on_slack.warning is not None and "nobody will be told" in on_slack.warning
    assert on_console.warning is None  # the console prints every message


@pytest.mark.postgres
def test_two_replicas_registering_the_same_release_at_once_both_answer_with_it(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first registration holds its transaction open just before it commits; the second
    # one's INSERT then waits on the release's unique key and fails when the first commits. It
    # is the same release: the second answers with it (not a 500 that makes the sender retry).
    from tests.conftest import truncate_all

    engine = make_engine(postgres_url)
    first_waits, first_may_commit = threading.Event(), threading.Event()
    holder = threading.current_thread

    def hold(name: str) -> None:
        if name == "register-before-commit" and holder().name == "first":
            first_waits.set()
            first_may_commit.wait(10)

    monkeypatch.setattr(failpoints, "hit", hold)
    answers: dict[str, Registration] = {}

    def register(name: str, delivery: str) -> None:
        with Session(engine, expire_on_commit=False) as session:
            answers[name] = register_release(
                session, event(delivery_id=delivery), settings=settings(), now=DEPLOYED
            )

    try:
        first = threading.Thread(target=register, args=("first", "d-1"), name="first")
        first.start()
        assert first_waits.wait(10)
        second = threading.Thread(target=register, args=("second", "d-2"), name="second")
        second.start()
        second.join(0.5)  # blocked on the first's uncommitted row
        assert second.is_alive()
        first_may_commit.set()
        first.join(10)
        second.join(10)
        assert set(answers) == {"first", "second"}
        assert answers["first"].created and not answers["second"].created
        assert answers["second"].release_id == answers["first"].release_id
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(Release)) == 1
    finally:
        first_may_commit.set()
        engine.dispose()
        truncate_all(postgres_url)
