"""The gateway's own documents (database ``footprint_gateway``): the access-revocation projection."""
from __future__ import annotations

from mongoengine import DateTimeField, Document, StringField


class AccessRevocation(Document):
    """Access tokens of this subject issued before ``not_before`` are refused (key: ``user:<id>``, ``school:<code>``)."""

    meta = {"db_alias": "gateway", "collection": "access_revocations"}
    key = StringField(primary_key=True)
    not_before = DateTimeField(required=True)
    reason = StringField()
