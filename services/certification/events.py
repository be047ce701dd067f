"""The events certification emits (payload models live in shared.events, the catalogue)."""
from __future__ import annotations

from shared.events import OutcomeCertified, OutcomeReturned, SubstituteAssigned, SubstituteRemoved
from shared.outbox import outbox_item

from .models import Certification, Substitute

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


def substitute_assigned(assignment: Substitute) -> dict:
    return outbox_item(SubstituteAssigned(
        assignment_id=assignment.id, school=assignment.school, teacher_id=assignment.teacher_id,
        substitute_id=assignment.substitute_id, starts_on=assignment.starts_on, ends_on=assignment.ends_on),
        school=assignment.school, producer=PRODUCER)


def substitute_removed(assignment: Substitute) -> dict:
    return outbox_item(SubstituteRemoved(assignment_id=assignment.id, school=assignment.school),
                       school=assignment.school, producer=PRODUCER)
