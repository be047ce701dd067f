"""The event catalogue: every event type on the bus, its version and its payload schema.

An event is a past-tense fact. The envelope (id, type, school, occurred_at, producer, payload) is the same
for all; the payload is validated against the model registered here for its type, when the event is made
and again when it is consumed. Routing key = type (e.g. ``identity.user.created.v1``).
Personal data that is encrypted at rest (national IDs) never travels on the bus.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

EXCHANGE = "footprint.events"


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    type: str
    school: str | None = Field(description="Tenant: 6-digit school code, or null for city-level facts")
    occurred_at: datetime
    producer: str
    payload: dict


CATALOGUE: dict[str, type[Payload]] = {}


def event_type(name: str):
    """Register a payload model under an event type name ``<service>.<entity>.<past-verb>.v<N>``."""
    parts = name.split(".")
    if len(parts) != 4 or not parts[3].startswith("v"):
        raise ValueError(f"event type {name!r} must look like service.entity.verb.vN")

    def register(model: type[Payload]) -> type[Payload]:
        CATALOGUE[name] = model
        model.event_type = name  # type: ignore[attr-defined]
        return model

    return register


class UnknownEvent(Exception):
    pass


def make_event(payload: Payload, *, school: str | None, producer: str) -> dict:
    """A new envelope (as a plain dict, ready to store in an outbox or publish)."""
    type_name = getattr(type(payload), "event_type", None)
    if type_name not in CATALOGUE:
        raise UnknownEvent(f"{type(payload).__name__} is not in the catalogue")
    return {
        "id": str(uuid.uuid4()),
        "type": type_name,
        "school": school,
        "occurred_at": datetime.now(timezone.utc).isoformat(),
        "producer": producer,
        "payload": payload.model_dump(mode="json"),
    }


def parse_event(body: dict) -> tuple[Envelope, Payload]:
    """Validate an envelope and its payload; raises UnknownEvent or pydantic.ValidationError."""
    envelope = Envelope.model_validate(body)
    model = CATALOGUE.get(envelope.type)
    if model is None:
        raise UnknownEvent(envelope.type)
    return envelope, model.model_validate(envelope.payload)


# ---- identity -------------------------------------------------------------------------------------------

Role = Literal[
    "student", "subject_teacher", "course_counsellor", "homeroom_teacher", "registrar", "curriculum",
    "student_affairs", "counselling_office", "school_admin", "city_admin",
]
StudentStatus = Literal["enrolled", "suspended", "transferred", "graduated"]


@event_type("identity.school.created.v1")
class SchoolCreated(Payload):
    code: str
    name: str
    city: str


@event_type("identity.school.updated.v1")
class SchoolUpdated(Payload):
    code: str
    name: str
    city: str


@event_type("identity.school.deactivated.v1")
class SchoolDeactivated(Payload):
    code: str
    deactivated_at: datetime


class StudentFacts(Payload):
    student_no: str
    class_name: str
    grade: int
    status: StudentStatus


class UserFacts(Payload):
    user_id: str
    school: str | None
    city: str
    username: str
    display_name: str
    roles: list[Role]
    homeroom_class: str | None = None
    student: StudentFacts | None = None


@event_type("identity.user.created.v1")
class UserCreated(UserFacts):
    pass


@event_type("identity.user.updated.v1")
class UserUpdated(UserFacts):
    # Set when the user's credentials changed (password change or reset): tokens issued before it are void.
    credentials_changed_at: datetime | None = None


@event_type("identity.user.deactivated.v1")
class UserDeactivated(Payload):
    user_id: str
    school: str | None
    deactivated_at: datetime
    reason: str


__all__ = [
    "EXCHANGE", "CATALOGUE", "Envelope", "Payload", "make_event", "parse_event", "UnknownEvent", "ValidationError",
    "SchoolCreated", "SchoolUpdated", "SchoolDeactivated", "UserCreated", "UserUpdated", "UserDeactivated",
    "UserFacts", "StudentFacts", "Role", "StudentStatus",
]
