"""The events records emits (payload models live in shared.events, the catalogue)."""
from __future__ import annotations

from shared.events import EnrolmentCreated, EnrolmentWithdrawn, GradeRecorded, SectionCreated, SectionUpdated
from shared.outbox import outbox_item

from .models import Enrolment, Section

PRODUCER = "records"


def section_facts(section: Section) -> dict:
    return {"section_id": section.id, "school": section.school, "term": section.term, "course_code": section.course_code,
            "subject_name": section.subject_name, "credits": section.credits, "category": section.category,
            "section_name": section.section_name, "teacher_ids": list(section.teacher_ids)}


def section_created(section: Section) -> dict:
    return outbox_item(SectionCreated(**section_facts(section)), school=section.school, producer=PRODUCER)


def section_updated(section: Section) -> dict:
    return outbox_item(SectionUpdated(**section_facts(section)), school=section.school, producer=PRODUCER)


def enrolment_created(enrolment: Enrolment) -> dict:
    return outbox_item(EnrolmentCreated(enrolment_id=enrolment.id, school=enrolment.school, term=enrolment.term,
                                        section_id=enrolment.section_id, course_code=enrolment.course_code,
                                        student_id=enrolment.student_id, student_no=enrolment.student_no),
                       school=enrolment.school, producer=PRODUCER)


def enrolment_withdrawn(enrolment: Enrolment) -> dict:
    return outbox_item(EnrolmentWithdrawn(enrolment_id=enrolment.id, school=enrolment.school, term=enrolment.term,
                                          section_id=enrolment.section_id, student_id=enrolment.student_id),
                       school=enrolment.school, producer=PRODUCER)


def grade_recorded(enrolment: Enrolment) -> dict:
    grade = enrolment.grade
    return outbox_item(GradeRecorded(enrolment_id=enrolment.id, school=enrolment.school, term=enrolment.term,
                                     section_id=enrolment.section_id, student_id=enrolment.student_id, score=grade.score,
                                     passed=grade.passed, credits_earned=grade.credits_earned, retake=grade.retake,
                                     makeup=grade.makeup),
                       school=enrolment.school, producer=PRODUCER)
