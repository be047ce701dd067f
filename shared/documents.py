"""MongoDB access for one service: its own database, behind one mongoengine alias.

``mongodb://…`` is a real server: MongoDB in production, the SecantusDB surrogate in development and tests
(deploy/docstore.py); nothing here depends on which. Each service owns ``<prefix>_<service>``; no service
reads another's collections.
"""
from __future__ import annotations

import mongoengine
from mongoengine.connection import get_db


def connect_documents(service: str, url: str, *, db_name: str | None = None) -> None:
    """Open the service's connection under alias ``service`` (idempotent for the same alias)."""
    db_name = db_name or f"footprint_{service}"
    mongoengine.disconnect(alias=service)
    _forget_cached_collections(service)
    if not url.startswith(("mongodb://", "mongodb+srv://")):
        raise ValueError(f"DOCUMENTS_URL must be a mongodb:// URL, not {url.split(':', 1)[0]}://")
    mongoengine.connect(db=db_name, alias=service, host=url, tz_aware=True,
                        serverSelectionTimeoutMS=3000, uuidRepresentation="standard")


def _forget_cached_collections(alias: str) -> None:
    """Drop every document class's cached collection for ``alias``. mongoengine's own disconnect finds classes
    through a registry keyed by class name, so of two services' same-named classes (records' and intake's
    ``Enrolment``) one would keep talking to the old connection."""
    stack = list(mongoengine.Document.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if not cls._meta.get("abstract") and cls._meta.get("db_alias") == alias:
            cls._collection = None


def database(service: str):
    """The raw pymongo database of a service (for the outbox relay, idempotency marks, health)."""
    return get_db(alias=service)


def ping(service: str) -> None:
    """Raise if the service's document store does not answer."""
    database(service).command("ping")


def by_id(model, key, **expected):
    """The document of ``model`` whose ``_id`` is ``key`` and whose fields equal ``expected`` (e.g. ``school=``), or None.

    Fetched by ``_id`` alone and compared here. MongoDB answers ``{_id, school}`` from the ``_id`` index anyway, but a
    planner that takes an index only when it covers every equality of the query (SecantusDB's, in development and
    tests) scans the whole collection for it: a tenancy-scoped look-up by id must never cost a scan.
    """
    document = model.objects(pk=key).first()
    if document is None or any(getattr(document, field) != value for field, value in expected.items()):
        return None
    return document
