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


# ---- records -------------------------------------------------------------------------------------------

class SectionFacts(Payload):
    section_id: str
    school: str
    term: str = Field(pattern=r"^[0-9]{3}0[12]$", description="學年度 (3 digits) + 學期 (01|02), e.g. 11201")
    course_code: str = Field(min_length=23, max_length=23)
    subject_name: str
    credits: int
    category: str
    section_name: str = Field(description="class or group the section is taught to, e.g. 101 or 跨班選修A")
    teacher_ids: list[str]


@event_type("records.section.created.v1")
class SectionCreated(SectionFacts):
    pass


@event_type("records.section.updated.v1")
class SectionUpdated(SectionFacts):
    pass


@event_type("records.enrolment.created.v1")
class EnrolmentCreated(Payload):
    enrolment_id: str
    school: str
    term: str
    section_id: str
    course_code: str
    student_id: str
    student_no: str


@event_type("records.enrolment.withdrawn.v1")
class EnrolmentWithdrawn(Payload):
    enrolment_id: str
    school: str
    term: str
    section_id: str
    student_id: str


@event_type("records.grade.recorded.v1")
class GradeRecorded(Payload):
    enrolment_id: str
    school: str
    term: str
    section_id: str
    student_id: str
    score: float | None
    passed: bool
    credits_earned: int
    retake: bool = False
    makeup: bool = False


class CadreFacts(Payload):
    cadre_id: str
    school: str
    term: str = Field(pattern=r"^[0-9]{3}0[12]$")
    student_id: str


@event_type("records.cadre.recorded.v1")
class CadreRecorded(CadreFacts):
    """A cadre record (幹部經歷) was entered (or entered again after its removal)."""

    level: Literal["school", "class", "club"]
    unit: str
    title: str


@event_type("records.cadre.removed.v1")
class CadreRemoved(CadreFacts):
    """A cadre record was removed."""


class CounsellingFacts(Payload):
    """Which student a 課程諮詢紀錄 is about and in which term: never its content (it stays at school)."""

    record_id: str
    school: str
    term: str = Field(pattern=r"^[0-9]{3}0[12]$", description="the term its date falls in (第1學期 Aug–Jan)")
    student_id: str


@event_type("records.counselling.logged.v1")
class CounsellingLogged(CounsellingFacts):
    """A counselling record was written, or its date moved it to another term (the latest by occurred_at wins)."""


@event_type("records.counselling.removed.v1")
class CounsellingRemoved(CounsellingFacts):
    """A counselling record was removed."""


# ---- intake --------------------------------------------------------------------------------------------

class StoredFile(Payload):
    file_id: str
    name: str
    kind: Literal["document", "media"]
    media_type: str
    size: int
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


@event_type("intake.outcome.submitted.v1")
class OutcomeSubmitted(Payload):
    """A student sent a course outcome for certification (送出認證); intake has locked it."""

    outcome_id: str
    school: str
    term: str
    section_id: str
    course_code: str
    student_id: str
    brief: str
    files: list[StoredFile]
    submitted_by: str
    submitted_from: str = Field(description="client address as the gateway saw it")
    submission: int = Field(description="1 for the first submission, +1 for each resubmission after a return")


class SelectedOutcome(Payload):
    """A certified course outcome as it stood when selected (certified outcomes cannot change)."""

    outcome_id: str
    term: str
    section_id: str
    course_code: str
    subject_name: str = ""
    brief: str
    files: list[StoredFile]
    certified_at: datetime | None = None


class SelectedPerformance(Payload):
    """A diverse performance as it stood when selected (a selected performance cannot change until unselected)."""

    performance_id: str
    term: str | None = None
    category: str
    name: str
    organiser: str = ""
    start_date: str
    end_date: str
    hours: float = 0
    result: str = ""
    brief: str = ""
    links: list[str] = Field(default_factory=list)
    files: list[StoredFile]


@event_type("intake.selection.changed.v1")
class SelectionChanged(Payload):
    """A student's 勾選 for a school year became what it lists (the whole selection: the latest revision wins).
    It carries the selected items whole, with every file's sha256, so the central submission exchange can build
    the year's package from its projection alone."""

    selection_id: str = Field(description="<school>:<student_id>:<year>")
    school: str
    student_id: str
    year: str = Field(pattern=r"^[0-9]{3}$")
    revision: int
    outcomes: list[SelectedOutcome]
    performances: list[SelectedPerformance]
    changed_by: str


@event_type("intake.selection.locked.v1")
class SelectionLocked(Payload):
    """The school year's selections of a school were locked (after the year's submission): none changes again."""

    school: str
    year: str = Field(pattern=r"^[0-9]{3}$")
    students: int = Field(description="how many selections were locked")
    revisions: int | None = Field(default=None, description="the sum of the locked selections' revisions: a projection "
                                  "holding `students` selections whose revisions add up to it has every one of them")
    locked_by: str


# ---- certification ---------------------------------------------------------------------------------------

@event_type("certification.outcome.certified.v1")
class OutcomeCertified(Payload):
    outcome_id: str
    school: str
    student_id: str
    section_id: str
    submission: int
    certified_by: str
    on_behalf_of: str | None = Field(default=None, description="the absent teacher, when a substitute (代理人) certified")
    kept_from_identical_content: bool = False
    certified_at: datetime


@event_type("certification.outcome.returned.v1")
class OutcomeReturned(Payload):
    outcome_id: str
    school: str
    student_id: str
    section_id: str
    submission: int
    returned_by: str
    on_behalf_of: str | None = None
    reason: str
    returned_at: datetime


@event_type("certification.substitute.assigned.v1")
class SubstituteAssigned(Payload):
    """代理人: ``substitute_id`` may certify for ``teacher_id`` on the dates from ``starts_on`` to ``ends_on``."""

    assignment_id: str
    school: str
    teacher_id: str
    substitute_id: str
    starts_on: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
    ends_on: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


@event_type("certification.substitute.removed.v1")
class SubstituteRemoved(Payload):
    assignment_id: str
    school: str


# ---- scheduling -----------------------------------------------------------------------------------------

WindowKind = Literal["precheck", "outcome_upload", "certification", "performance_upload", "selection", "submission",
                     "receipt_confirmation", "dispute"]
# What each window is called (zh-TW, English): the services that enforce a window name it in their messages.
WINDOW_NAMES: dict[str, tuple[str, str]] = {
    "precheck": ("預檢", "pre-check"),
    "outcome_upload": ("成果上傳", "course outcome upload"),
    "certification": ("教師認證", "teacher certification"),
    "performance_upload": ("多元表現上傳", "diverse performance upload"),
    "selection": ("勾選", "selection"),
    "submission": ("提交", "submission"),
    "receipt_confirmation": ("收訖明細確認", "receipt confirmation"),
    "dispute": ("疑義處理", "disputes"),
}


class WindowFacts(Payload):
    """One window of a school's term schedule: open from ``starts_at`` (inclusive) to ``ends_at`` (exclusive)."""

    window_id: str = Field(description="<school>:<term>:<kind>, stable for the window whatever its dates")
    school: str
    term: str = Field(pattern=r"^[0-9]{3}0[12]$")
    kind: WindowKind
    starts_at: datetime
    ends_at: datetime
    revision: int = Field(description="1 when the window was first set, +1 for each change")


@event_type("scheduling.window.scheduled.v1")
class WindowSet(WindowFacts):
    """A window was set or changed (the whole window: the latest by occurred_at wins)."""

    set_by: str


@event_type("scheduling.window.opened.v1")
class WindowOpened(WindowFacts):
    """The window's start passed (once per start and end of the window)."""


@event_type("scheduling.closing.announced.v1")
class WindowClosing(WindowFacts):
    """It was announced that the window closes in ``days_before`` days or less (once per end of the window): the
    reminder the issue calls window.closing, named as a past-tense fact like every event."""

    days_before: int


@event_type("scheduling.window.closed.v1")
class WindowClosed(WindowFacts):
    """The window's end passed (once per end of the window)."""


# ---- central submission exchange --------------------------------------------------------------------------

@event_type("exchange.submission.requested.v1")
class SubmissionRequested(Payload):
    """Staff asked for a submission to the central database. Scope ``year``: intake locks the academic year's
    selections (``intake.selection.locked.v1``) before the exchange builds the package from them."""

    submission_id: str
    school: str
    scope: Literal["term", "year"]
    term: str = Field(pattern=r"^[0-9]{3}0[12]$")
    year: str = Field(pattern=r"^[0-9]{3}$")
    requested_by: str


@event_type("exchange.submission.finalized.v1")
class SubmissionFinalized(Payload):
    """A school marked a submission final (定案): nothing it covers may change again. Scope ``term``: the term's
    basic data and course records (records refuses changes in ``term``). Scope ``year``: the academic year's course
    outcomes, diverse performances and selections (intake and certification refuse changes in the terms
    ``<year>01`` and ``<year>02``)."""

    submission_id: str
    school: str
    scope: Literal["term", "year"]
    term: str = Field(pattern=r"^[0-9]{3}0[12]$")
    year: str = Field(pattern=r"^[0-9]{3}$")
    version: int
    finalized_by: str
    finalized_at: datetime


__all__ = [
    "EXCHANGE", "CATALOGUE", "Envelope", "Payload", "make_event", "parse_event", "UnknownEvent", "ValidationError",
    "SchoolCreated", "SchoolUpdated", "SchoolDeactivated", "UserCreated", "UserUpdated", "UserDeactivated",
    "UserFacts", "StudentFacts", "Role", "StudentStatus", "SectionFacts", "SectionCreated", "SectionUpdated",
    "EnrolmentCreated", "EnrolmentWithdrawn", "GradeRecorded", "CadreFacts", "CadreRecorded", "CadreRemoved", "StoredFile", "OutcomeSubmitted", "SelectedOutcome",
    "SelectedPerformance", "SelectionChanged", "SelectionLocked", "OutcomeCertified",
    "OutcomeReturned", "SubstituteAssigned", "SubstituteRemoved", "WindowKind", "WINDOW_NAMES", "WindowFacts", "WindowSet",
    "WindowOpened", "WindowClosing", "WindowClosed", "SubmissionRequested",
    "SubmissionFinalized",
]
