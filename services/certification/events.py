"""The events certification emits (payload models live in shared.events, the catalogue)."""
from __future__ import annotations

from shared.events import OutcomeCertified, OutcomeReturned
from shared.outbox import outbox_item

from .models import Certification

PRODUCER = "certification"


def outcome_certified(record: Certification) -> dict:
    return outbox_item(OutcomeCertified(
        outcome_id=record.id, school=record.school, student_id=record.student_id, section_id=record.section_id,
        submission=record.submission, certified_by=record.decided_by, on_behalf_of=record.on_behalf_of,
        kept_from_identical_content=bool(record.kept_from_identical_content), certified_at=record.decided_at),
        school=record.school, producer=PRODUCER)


def outcome_returned(record: Certification) -> dict:
    return outbox_item(OutcomeReturned(
        outcome_id=record.id, school=record.school, student_id=record.student_id, section_id=record.section_id,
        submission=record.submission, returned_by=record.decided_by, on_behalf_of=record.on_behalf_of,
        reason=record.reason, returned_at=record.decided_at), school=record.school, producer=PRODUCER)
