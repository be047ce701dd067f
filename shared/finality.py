"""Final (定案) terms and years, as every service that owns submitted data keeps them.

When a school marks a submission final, the central submission exchange announces
``exchange.submission.finalized.v1``. From then on nothing that submission covers may change, in any service:
scope ``term`` covers the term's basic data and course records (records), scope ``year`` the academic year's
course outcomes, diverse performances, their certification and the selections (intake, certification).

Each owning service keeps the finals in its own database (``final_periods(alias)``, fed by
``finality_subscription``) and asks ``refuse_if_term_final`` / ``refuse_if_year_final`` before a change: one
look-up by ``_id`` on the write path, no call to the exchange. The projection only ever grows (a final is never
undone), so a redelivered or late event is harmless.
"""
from __future__ import annotations

from mongoengine import DateTimeField, Document, IntField, StringField
from pymongo.errors import DuplicateKeyError

from shared.bus import Subscription
from shared.errors import DomainError
from shared.events import Envelope, SubmissionFinalized

FINALIZED = "exchange.submission.finalized.v1"


def final_periods(alias: str) -> type[Document]:
    """A ``final_periods`` collection in the service's own database; ``_id`` = ``<school>:<scope>:<term or year>``."""
    fields = {
        "meta": {"db_alias": alias, "collection": "final_periods"},
        "id": StringField(primary_key=True),
        "school": StringField(required=True),
        "scope": StringField(required=True, choices=("term", "year")),
        "period": StringField(required=True),  # the term code (scope term) or the academic year (scope year)
        "submission_id": StringField(),
        "version": IntField(),
        "finalized_by": StringField(),
        "finalized_at": DateTimeField(),
        "__module__": __name__,
    }
    return type(f"{alias.title().replace('_', '')}FinalPeriod", (Document,), fields)


def _key(school: str, scope: str, period: str) -> str:
    return f"{school}:{scope}:{period}"


def apply_finalized(model: type[Document], payload: SubmissionFinalized) -> None:
    period = payload.term if payload.scope == "term" else payload.year
    values = {"school": payload.school, "scope": payload.scope, "period": period,
              "submission_id": payload.submission_id, "version": payload.version,
              "finalized_by": payload.finalized_by, "finalized_at": payload.finalized_at}
    try:
        # First final wins: a later event for the same period (a replay) changes nothing.
        model._get_collection().update_one({"_id": _key(payload.school, payload.scope, period)},
                                           {"$setOnInsert": values}, upsert=True)
    except DuplicateKeyError:
        pass  # two consumers inserted it at once: it is there


def finality_subscription(service: str, model: type[Document]) -> Subscription:
    def handle(envelope: Envelope, payload) -> None:
        if isinstance(payload, SubmissionFinalized):
            apply_finalized(model, payload)

    return Subscription(queue=f"{service}.finality", event_types=[FINALIZED], handler=handle)


def is_final(model: type[Document], school: str, scope: str, period: str) -> bool:
    return model._get_collection().find_one({"_id": _key(school, scope, period)}, {"_id": 1}) is not None


def refuse_if_term_final(model: type[Document], school: str, term: str) -> None:
    """409 ``term_final`` when the term's basic data and course records were submitted and made final."""
    if is_final(model, school, "term", term):
        raise DomainError("term_final", f"term {term} of school {school} is final: its submitted data cannot change")


def refuse_if_year_final(model: type[Document], school: str, term: str) -> None:
    """409 ``year_final`` when the academic year of ``term`` (a term code, or a 3-digit year) was made final."""
    year = term[:3]
    if is_final(model, school, "year", year):
        raise DomainError("year_final", f"school year {year} of school {school} is final: its submitted data "
                                        "cannot change")
