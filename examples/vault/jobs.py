"""Doing an appraisal job: the goblin's work, or the API's own when no broker is configured."""

from __future__ import annotations

from sqlalchemy.orm import Session

from examples.vault import db
from examples.vault.clients import Job, RatesClient
from examples.vault.telemetry import traced
from examples.vault.versions import Release


@traced
def work(session: Session, rates: RatesClient, release: Release, job: Job, *, by: str) -> None:
    """Appraise the job's vault with ``release``'s code and record the result."""
    valuation = release.appraisal.appraise(session, rates, job.vault_id)
    session.add(
        db.Appraisal(
            vault_id=job.vault_id,
            job_id=job.job_id,
            items=valuation.items,
            total_galleons=valuation.total_galleons,
            appraised_by=by,
        )
    )
    session.commit()
