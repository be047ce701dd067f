"""The events identity emits (payload models live in shared.events, the catalogue)."""
from __future__ import annotations

from datetime import datetime

from shared.events import (SchoolCreated, SchoolDeactivated, SchoolUpdated, StudentFacts, UserCreated, UserDeactivated,
                           UserUpdated)
from shared.outbox import outbox_item

from .models import School, User

PRODUCER = "identity"


def _facts(user: User) -> dict:
    student = None
    if user.student is not None:
        student = StudentFacts(student_no=user.student.student_no, class_name=user.student.class_name,
                               grade=user.student.grade, status=user.student.status)
    return {"user_id": user.id, "school": user.school, "city": user.city, "username": user.username,
            "display_name": user.display_name, "roles": list(user.roles), "homeroom_class": user.homeroom_class,
            "student": student}


def user_created(user: User) -> dict:
    return outbox_item(UserCreated(**_facts(user)), school=user.school, producer=PRODUCER)


def user_updated(user: User, *, credentials_changed: bool = False) -> dict:
    changed_at = user.credentials_changed_at if credentials_changed else None
    return outbox_item(UserUpdated(**_facts(user), credentials_changed_at=changed_at), school=user.school, producer=PRODUCER)


def user_deactivated(user: User, at: datetime, reason: str) -> dict:
    return outbox_item(UserDeactivated(user_id=user.id, school=user.school, deactivated_at=at, reason=reason),
                       school=user.school, producer=PRODUCER)


def school_created(school: School) -> dict:
    return outbox_item(SchoolCreated(code=school.code, name=school.name, city=school.city), school=school.code, producer=PRODUCER)


def school_updated(school: School) -> dict:
    return outbox_item(SchoolUpdated(code=school.code, name=school.name, city=school.city), school=school.code, producer=PRODUCER)


def school_deactivated(school: School, at: datetime) -> dict:
    return outbox_item(SchoolDeactivated(code=school.code, deactivated_at=at), school=school.code, producer=PRODUCER)
