"""The events the exchange emits (payload models live in shared.events, the catalogue)."""
from __future__ import annotations

from shared.events import SubmissionFinalized, SubmissionRequested
from shared.outbox import outbox_item

from .models import Submission

PRODUCER = "exchange"


def submission_requested(submission: Submission) -> dict:
    return outbox_item(SubmissionRequested(
        submission_id=submission.id, school=submission.school, scope=submission.scope, term=submission.term,
        year=submission.year, requested_by=submission.created_by), school=submission.school, producer=PRODUCER)


def submission_finalized(submission: Submission) -> dict:
    return outbox_item(SubmissionFinalized(
        submission_id=submission.id, school=submission.school, scope=submission.scope, term=submission.term,
        year=submission.year, version=submission.latest_version, finalized_by=submission.finalized_by,
        finalized_at=submission.finalized_at), school=submission.school, producer=PRODUCER)
