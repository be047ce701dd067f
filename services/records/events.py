"""The events records emits (payload models live in shared.events, the catalogue)."""
from __future__ import annotations

from shared.events import EnrolmentCreated, EnrolmentWithdrawn, GradeRecorded, SectionCreated, SectionUpdated
from shared.events import CadreRecorded, CadreRemoved, CounsellingLogged
from shared.outbox import outbox_item

from .models import Cadre, CounsellingRecord, Enrolment, Section

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


def term_of_day(day: str) -> str:
    """The term a date (YYYY-MM-DD) falls in: 第1學期 August–January, 第2學期 February–July (11201 = Aug 2023–Jan 2024)."""
    year, month = int(day[:4]), int(day[5:7])
    school_year = year - 1911 if month >= 8 else year - 1912
    return f"{school_year:03d}0{1 if month >= 8 or month == 1 else 2}"


def counselling_logged(record: CounsellingRecord) -> dict:
    """Who and when only: a counselling record's content never leaves records."""
    return outbox_item(CounsellingLogged(record_id=record.id, school=record.school, term=term_of_day(record.date),
                                         student_id=record.student_id), school=record.school, producer=PRODUCER)


def cadre_recorded(cadre: Cadre) -> dict:
    return outbox_item(CadreRecorded(cadre_id=cadre.id, school=cadre.school, term=cadre.term, student_id=cadre.student_id,
                                     level=cadre.level, unit=cadre.unit, title=cadre.title),
                       school=cadre.school, producer=PRODUCER)


def cadre_removed(cadre: Cadre) -> dict:
    return outbox_item(CadreRemoved(cadre_id=cadre.id, school=cadre.school, term=cadre.term, student_id=cadre.student_id),
                       school=cadre.school, producer=PRODUCER)


def grade_recorded(enrolment: Enrolment) -> dict:
    grade = enrolment.grade
    return outbox_item(GradeRecorded(enrolment_id=enrolment.id, school=enrolment.school, term=enrolment.term,
                                     section_id=enrolment.section_id, student_id=enrolment.student_id, score=grade.score,
                                     passed=grade.passed, credits_earned=grade.credits_earned, retake=grade.retake,
                                     makeup=grade.makeup),
                       school=enrolment.school, producer=PRODUCER)
