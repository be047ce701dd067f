"""The events intake emits (payload models live in shared.events, the catalogue)."""
from __future__ import annotations

from shared.events import OutcomeSubmitted, StoredFile
from shared.outbox import outbox_item

from .models import FileRecord, Outcome

PRODUCER = "intake"


def stored_file(record: FileRecord) -> StoredFile:
    return StoredFile(file_id=record.file_id, name=record.name, kind=record.kind, media_type=record.media_type,
                      size=record.size, sha256=record.sha256)


def outcome_submitted(outcome: Outcome) -> dict:
    payload = OutcomeSubmitted(
        outcome_id=outcome.id, school=outcome.school, term=outcome.term, section_id=outcome.section_id,
        course_code=outcome.course_code, student_id=outcome.student_id, brief=outcome.brief,
        files=[stored_file(f) for f in outcome.files], submitted_by=outcome.submitted_by,
        submitted_from=outcome.submitted_from or "", submission=outcome.submission)
    return outbox_item(payload, school=outcome.school, producer=PRODUCER)
