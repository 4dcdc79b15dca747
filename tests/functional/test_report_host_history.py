"""``feedbot report`` with a database pools the host spread the service's checks recorded;
with trace files alone (no store) it measures it from the run, as before."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from feedbot.backends.embedded import EmbeddedBackend
from feedbot.checks.register import register_release
from feedbot.spans.otlp import PROTOBUF
from feedbot.store.db import make_engine, make_sessions, migrate
from feedbot.store.models import Release
from tests.factories import event, settings
from tests.fakes.sdk_spans import T0, protobuf
from tests.functional.test_report_baseline import run
from tests.functional.test_report_oneshot import run_spans, write_run
from tests.report_runs import deploy_file

PART = {"tau": 0.04, "mean_square": 0.0030, "sampling": 0.0014}


def _spread_note(doc: dict[str, object]) -> str:
    (note,) = [n for n in doc["notes"] if "Between-instance spread" in n]  # type: ignore[attr-defined]
    return str(note)


def test_a_report_with_a_database_pools_the_recorded_spread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'feedbot.db'}"
    engine = make_engine(url)
    migrate(engine)
    sessions = make_sessions(engine)
    EmbeddedBackend(sessions).ingest(protobuf(run_spans(slower=1.0, seed=6)), PROTOBUF, None)
    # 1.0's release, checked by serve yesterday: its check recorded 1.0's and 0.9's spread.
    at = T0 - timedelta(days=1)
    with Session(engine) as session:
        reg = register_release(session, event(service="checkout", version="1.0", commit="a",
                               deployed_at=at), settings=settings(), now=at)  # fmt: skip
        release = session.get(Release, reg.release_id)
        assert release is not None
        check = release.checks[0]
        check.state, check.finished_at = "done", at + timedelta(hours=1)
        check.result = {"report": {}, "held": [], "tau": {"versions": [
            {"version": "1.0", "dof": 3, **PART}, {"version": "0.9", "dof": 3, **PART},
        ]}}  # fmt: skip
        session.commit()
    engine.dispose()
    config = tmp_path / "feedbot.yaml"
    config.write_text(f'database_url: "{url}"\ntraces:\n  backend: embedded\n')
    code, doc, err = run(capsys, "--deploy", str(deploy_file(tmp_path)), "--config", str(config))
    assert code == 0, err
    note = _spread_note(doc)
    # 1.0 is this report's baseline (its pods counted here): only 0.9's part is added, 3 df
    # to this run's 2 (2 pods a version), above the 2 at which the upper bound is used.
    assert "from this check and the 1 earlier release of checkout: τ = " in note
    assert "from 5 degrees of freedom" in note

    traces = write_run(tmp_path, slower=1.0, seed=6)
    code, doc, err = run(capsys, "--deploy", str(deploy_file(tmp_path)), "--traces", str(traces))
    assert code == 0, err
    note = _spread_note(doc)
    assert "earlier release" not in note and "from 2 degrees of freedom" in note
