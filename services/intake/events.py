"""The events intake emits (payload models live in shared.events, the catalogue)."""
from __future__ import annotations

from shared.events import (OutcomeSubmitted, SelectedOutcome, SelectedPerformance, SelectionChanged, SelectionLocked,
                           StoredFile)
from shared.outbox import outbox_item

from .models import FileRecord, Outcome, Performance, Selection

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


def selected_outcome(outcome: Outcome) -> SelectedOutcome:
    return SelectedOutcome(outcome_id=outcome.id, term=outcome.term, section_id=outcome.section_id,
                           course_code=outcome.course_code, subject_name=outcome.subject_name or "",
                           brief=outcome.brief, files=[stored_file(f) for f in outcome.files],
                           certified_at=outcome.certified_at)


def selected_performance(item: Performance) -> SelectedPerformance:
    return SelectedPerformance(performance_id=item.id, term=item.term, category=item.category, name=item.name,
                               organiser=item.organiser or "", start_date=item.start_date, end_date=item.end_date,
                               hours=item.hours or 0, result=item.result or "", brief=item.brief or "",
                               links=list(item.links), files=[stored_file(f) for f in item.files])


def selection_changed(selection: Selection, outcomes: list[Outcome], performances: list[Performance]) -> dict:
    payload = SelectionChanged(
        selection_id=selection.id, school=selection.school, student_id=selection.student_id, year=selection.year,
        revision=selection.revision, outcomes=[selected_outcome(o) for o in outcomes],
        performances=[selected_performance(p) for p in performances], changed_by=selection.updated_by)
    return outbox_item(payload, school=selection.school, producer=PRODUCER)


def selection_locked(school: str, year: str, revisions: list[int], locked_by: str) -> dict:
    """The count of the year's selections and the sum of their revisions: the exchange builds the year's package
    only once its projection holds every selection at that revision."""
    return outbox_item(SelectionLocked(school=school, year=year, students=len(revisions), revisions=sum(revisions),
                                       locked_by=locked_by), school=school, producer=PRODUCER)
