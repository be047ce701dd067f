"""Identity's documents (database ``footprint_identity``). Every document carries its school."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from mongoengine import (BooleanField, DateTimeField, Document, EmbeddedDocument, EmbeddedDocumentField, IntField,
                         ListField, StringField)

from shared.outbox import Aggregate

ALIAS = "identity"


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return uuid.uuid4().hex


class City(Document):
    meta = {"db_alias": ALIAS, "collection": "cities"}
    code = StringField(primary_key=True, regex=r"^[A-Z]{3}$")
    name = StringField(required=True)


class School(Aggregate):
    meta = {"db_alias": ALIAS, "collection": "schools", "indexes": ["city"]}
    code = StringField(primary_key=True, regex=r"^[0-9]{6}$")
    name = StringField(required=True, max_length=100)
    city = StringField(required=True)
    active = BooleanField(default=True)
    created_at = DateTimeField(default=now)
    updated_at = DateTimeField(default=now)


class StudentRecord(EmbeddedDocument):
    student_no = StringField(required=True, max_length=20)
    class_name = StringField(required=True, max_length=20)
    grade = IntField(required=True, min_value=10, max_value=12)
    status = StringField(required=True, choices=("enrolled", "suspended", "transferred", "graduated"))
    # 身分證字號/居留證號: AES-GCM ciphertext, a keyed hash for look-ups, and the last characters for display.
    national_id_enc = StringField(required=True)
    national_id_hash = StringField(required=True)
    national_id_masked = StringField(required=True)


class User(Aggregate):
    meta = {"db_alias": ALIAS, "collection": "users", "indexes": [
        {"fields": ["school", "username"], "unique": True},
        # Partial, not sparse: a sparse compound index still indexes staff as (school, null) and would collide.
        {"fields": ["school", "student.student_no"], "unique": True,
         "partialFilterExpression": {"student.student_no": {"$exists": True}}},
        {"fields": ["school", "student.national_id_hash"]},
        {"fields": ["school", "roles"]},
    ]}
    id = StringField(primary_key=True, default=new_id)
    school = StringField(null=True)  # None only for city admins
    city = StringField(required=True)
    username = StringField(required=True, max_length=40)
    display_name = StringField(required=True, max_length=60)
    roles = ListField(StringField(), required=True)
    homeroom_class = StringField(null=True, max_length=20)
    student = EmbeddedDocumentField(StudentRecord, null=True)
    password_hash = StringField(required=True)
    must_change_password = BooleanField(default=True)
    credentials_changed_at = DateTimeField(default=now)
    active = BooleanField(default=True)
    # Fingerprint of the import row that last wrote this user: re-importing the same row changes nothing.
    import_fingerprint = StringField(null=True)
    created_at = DateTimeField(default=now)
    updated_at = DateTimeField(default=now)

    @property
    def receipts_only(self) -> bool:
        return self.student is not None and self.student.status in ("suspended", "transferred")


class RefreshToken(Document):
    """Refresh tokens are opaque; only their sha256 is stored. Rotation keeps a family to detect reuse."""

    meta = {"db_alias": ALIAS, "collection": "refresh_tokens", "indexes": ["user_id", "family",
                                                                            {"fields": ["expires_at"], "expireAfterSeconds": 0}]}
    token_hash = StringField(primary_key=True)
    user_id = StringField(required=True)
    school = StringField(null=True)
    family = StringField(required=True)
    issued_at = DateTimeField(default=now)
    expires_at = DateTimeField(required=True)
    revoked_at = DateTimeField(null=True)


class LoginThrottle(Document):
    """Failed sign-ins per (tenant, username), kept for unknown usernames too so both behave alike."""

    # Entries for made-up usernames would otherwise pile up: they expire a day after the last attempt.
    meta = {"db_alias": ALIAS, "collection": "login_throttle",
            "indexes": [{"fields": ["updated_at"], "expireAfterSeconds": 24 * 3600}]}
    key = StringField(primary_key=True)
    failures = IntField(default=0)
    locked_until = DateTimeField(null=True)
    updated_at = DateTimeField(default=now)
