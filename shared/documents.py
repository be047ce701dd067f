"""MongoDB access for one service: its own database, behind one mongoengine alias.

``mongomock://`` maps to mongomock's in-memory client (one store per process), ``mongodb://…`` to a real
server. Each service owns ``footprint_<service>``; no service reads another's collections.
"""
from __future__ import annotations

import uuid

import mongoengine
from mongoengine.connection import get_db


def connect_documents(service: str, url: str, *, db_name: str | None = None) -> None:
    """Open the service's connection under alias ``service`` (idempotent for the same alias)."""
    db_name = db_name or f"footprint_{service}"
    mongoengine.disconnect(alias=service)
    if url.startswith("mongomock://"):
        import mongomock

        # A distinct appname per connection: mongoengine reuses a client whose settings equal another
        # alias's, which would make two services (or two test runs) share one in-memory store.
        mongoengine.connect(db=db_name, alias=service, host="mongodb://localhost", appname=f"{service}-{uuid.uuid4().hex}",
                            mongo_client_class=mongomock.MongoClient, tz_aware=True)
    else:
        mongoengine.connect(db=db_name, alias=service, host=url, tz_aware=True,
                            serverSelectionTimeoutMS=3000, uuidRepresentation="standard")


def database(service: str):
    """The raw pymongo database of a service (for the outbox relay, idempotency marks, health)."""
    return get_db(alias=service)


def ping(service: str) -> None:
    """Raise if the service's document store does not answer."""
    database(service).command("ping")
