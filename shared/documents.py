"""MongoDB access for one service: its own database, behind one mongoengine alias.

``mongomock://`` maps to mongomock's in-memory client (one store per process), ``mongodb://…`` to a real
server. Each service owns ``footprint_<service>``; no service reads another's collections.
"""
from __future__ import annotations

import threading
import uuid

import mongoengine
from mongoengine.connection import get_db


_fast = threading.local()


def accelerate_mongomock() -> None:
    """Two exact shortcuts for mongomock, the in-memory stand-in used by the embedded run and the tests.

    mongomock answers ``{"_id": x}`` and checks unique indexes by scanning every document, so a 10,000-row
    import costs O(n²) (minutes) where MongoDB uses a B-tree. The shortcuts give the same answers in O(1)
    per document: an ``_id`` equality look-up reads the store's own dict; a bulk insert checks its unique
    keys against one set built for the whole batch (any duplicate falls back to mongomock's own path, so
    error semantics stay mongomock's). Applied once per process.
    """
    from bson import ObjectId
    from mongomock import collection as mc
    from mongomock import helpers
    from mongomock.filtering import filter_applies

    if getattr(mc.Collection, "_footprint_accelerated", False):
        return
    iter_documents, insert_many, ensure_uniques = mc.Collection._iter_documents, mc.Collection.insert_many, \
        mc.Collection._ensure_uniques

    def fast_iter_documents(self, filter):
        if isinstance(filter, dict) and len(filter) == 1 and isinstance(filter.get("_id"), (str, ObjectId)):
            try:
                return iter((self._store[filter["_id"]],))
            except KeyError:
                return iter(())
        return iter_documents(self, filter)

    def unique_key(document, index):
        partial = index.get("partialFilterExpression")
        if partial is not None and not filter_applies(partial, document):
            return None
        values = []
        for field, _ in index["key"]:
            try:
                values.append(helpers.get_value_by_dot(document, field))
            except (KeyError, TypeError, IndexError):
                values.append(None)
        if index.get("sparse") and all(v is None for v in values):
            return None
        return tuple(values)

    def fast_insert_many(self, documents, ordered=True, bypass_document_validation=False, session=None):
        documents = list(documents)
        indexes = [ix for ix in self._store.indexes.values() if ix.get("unique")]
        if len(documents) < 20 or not indexes:
            return insert_many(self, documents, ordered, bypass_document_validation, session)
        try:
            for index in indexes:
                keys = {k for k in (unique_key(d, index) for d in self._store.documents) if k is not None}
                for document in documents:
                    key = unique_key(document, index)
                    if key is None:
                        continue
                    if key in keys:
                        raise LookupError  # a duplicate: let mongomock raise it its own way
                    keys.add(key)
        except (LookupError, TypeError):
            return insert_many(self, documents, ordered, bypass_document_validation, session)
        _fast.checked = True
        try:
            return insert_many(self, documents, ordered, bypass_document_validation, session)
        finally:
            _fast.checked = False

    def checked_ensure_uniques(self, new_data):
        if not getattr(_fast, "checked", False):
            ensure_uniques(self, new_data)

    mc.Collection._iter_documents = fast_iter_documents
    mc.Collection.insert_many = fast_insert_many
    mc.Collection._ensure_uniques = checked_ensure_uniques
    mc.Collection._footprint_accelerated = True


def connect_documents(service: str, url: str, *, db_name: str | None = None) -> None:
    """Open the service's connection under alias ``service`` (idempotent for the same alias)."""
    db_name = db_name or f"footprint_{service}"
    mongoengine.disconnect(alias=service)
    _forget_cached_collections(service)
    if url.startswith("mongomock://"):
        import mongomock

        accelerate_mongomock()
        # A distinct appname per connection: mongoengine reuses a client whose settings equal another
        # alias's, which would make two services (or two test runs) share one in-memory store.
        mongoengine.connect(db=db_name, alias=service, host="mongodb://localhost", appname=f"{service}-{uuid.uuid4().hex}",
                            mongo_client_class=mongomock.MongoClient, tz_aware=True)
    else:
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
