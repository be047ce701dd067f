"""Identity's rules: sign-in and tokens, schools as tenants, users, roles and students.

Every read and write is scoped to the caller's school (a city admin: the schools of their city); a record
of another tenant is reported as not found, never as forbidden, so tenants cannot probe each other.
"""
from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import jwt
from mongoengine.errors import NotUniqueError
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.auth import ALGORITHM, AUDIENCE, ISSUER, STAFF_ROLES, Principal
from shared.errors import DomainError
from shared.outbox import save_with_events

from . import events
from .models import City, LoginThrottle, RefreshToken, School, StudentRecord, User, now
from .security import (NationalIdVault, SigningKeys, check_password_policy, hash_password, normalise_national_id,
                       verify_password)

MAX_FAILURES = 5
LOCK_MINUTES = 15
USER_MANAGERS = ("school_admin", "city_admin")  # every account of a school
STUDENT_MANAGERS = ("registrar",)               # 學籍: students' accounts
ROLES = ("student", "subject_teacher", "course_counsellor", "homeroom_teacher", "registrar", "curriculum",
         "student_affairs", "counselling_office", "school_admin", "city_admin")


@dataclass
class Identity:
    """What identity's rules need besides the documents: its keys and token lifetimes."""

    keys: SigningKeys
    vault: NationalIdVault
    access_ttl: int = 600
    refresh_ttl: int = 14 * 24 * 3600


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


# ---- tokens ---------------------------------------------------------------------------------------------

def _access_token(identity: Identity, user: User) -> str:
    issued = now()
    claims = {
        "iss": ISSUER, "aud": AUDIENCE, "typ": "access", "sub": user.id, "usr": user.username, "name": user.display_name,
        "sch": user.school, "city": user.city, "roles": list(user.roles), "pwd": bool(user.must_change_password),
        "rst": user.receipts_only, "iat": int(issued.timestamp()), "ims": int(issued.timestamp() * 1000), "exp": int(issued.timestamp()) + identity.access_ttl,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, identity.keys.private_key, algorithm=ALGORITHM, headers={"kid": identity.keys.kid})


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _issue(identity: Identity, user: User, family: str | None = None) -> dict:
    refresh = secrets.token_urlsafe(32)
    RefreshToken(token_hash=_hash_token(refresh), user_id=user.id, school=user.school, family=family or uuid.uuid4().hex,
                 expires_at=now() + timedelta(seconds=identity.refresh_ttl)).save(force_insert=True)
    return {"access_token": _access_token(identity, user), "token_type": "Bearer", "expires_in": identity.access_ttl,
            "refresh_token": refresh, "must_change_password": bool(user.must_change_password)}


def _tenant(code: str) -> tuple[str | None, str | None]:
    """A sign-in names a school (6 digits) or, for city admins, a city (3 letters)."""
    code = code.strip().upper()
    if len(code) == 6 and code.isdigit():
        return code, None
    return None, code


def _count_attempt(throttle, key: str, moment) -> dict:
    """One more attempt on ``key``, atomically. The counter is created first (an upsert that counts nothing,
    where two racing creators may collide on the key: harmless), then incremented without upsert: an upsert
    that increments cannot tell a lost race (nothing returned) from a counted attempt, a plain increment can —
    nothing returned means nothing matched (a success just deleted the counter), so trying again is exact."""
    for _ in range(5):
        try:
            throttle.update_one({"_id": key}, {"$setOnInsert": {"failures": 0, "updated_at": moment}}, upsert=True)
        except DuplicateKeyError:
            pass  # another attempt created it a moment ago
        state = throttle.find_one_and_update({"_id": key}, {"$inc": {"failures": 1}, "$set": {"updated_at": moment}},
                                             return_document=ReturnDocument.AFTER)
        if state is not None:
            return state
    raise DomainError("conflict", "too many simultaneous sign-in attempts; retry")


def login(identity: Identity, tenant: str, username: str, password: str) -> dict:
    school, city = _tenant(tenant)
    username = username.strip()
    key = f"{tenant.strip().upper()}:{username.lower()}"
    throttle = LoginThrottle._get_collection()
    moment = now()
    # Count the attempt before checking the password, atomically: concurrent guesses cannot all read the same
    # count, so at most MAX_FAILURES passwords are ever tried per lock window (unknown usernames alike).
    state = _count_attempt(throttle, key, moment)
    locked_until = _utc(state.get("locked_until"))
    if locked_until is None and state["failures"] > MAX_FAILURES:
        locked_until = moment + timedelta(minutes=LOCK_MINUTES)
        throttle.update_one({"_id": key}, {"$set": {"locked_until": locked_until, "failures": 0}})
    if locked_until is not None:
        if locked_until > moment:
            retry = int((locked_until - moment).total_seconds()) + 1
            raise DomainError("account_locked", headers={"Retry-After": str(retry)}, retry_after=retry)
        throttle.update_one({"_id": key}, {"$set": {"failures": 1}, "$unset": {"locked_until": ""}})  # lock over
    query = User.objects(username=username, school=school) if school else User.objects(username=username, school=None, city=city)
    user = query.first()
    school_doc = School.objects(code=school).first() if school else None
    if not verify_password(user.password_hash if user else None, password):
        raise DomainError("invalid_credentials")
    throttle.delete_one({"_id": key})
    if not user.active or (school_doc is not None and not school_doc.active):
        raise DomainError("account_inactive")
    return _issue(identity, user)


def refresh(identity: Identity, token: str) -> dict:
    record = RefreshToken.objects(token_hash=_hash_token(token)).first()
    if record is None or _utc(record.expires_at) <= now():
        raise DomainError("invalid_token", "unknown or expired refresh token")
    if record.revoked_at is not None:
        # A rotated-out token came back: it was stolen or replayed. Revoke the whole family.
        RefreshToken.objects(family=record.family, revoked_at=None).update(set__revoked_at=now())
        raise DomainError("token_revoked", "refresh token reuse detected; all sessions of this sign-in were ended")
    claimed = RefreshToken.objects(token_hash=record.token_hash, revoked_at=None).update_one(set__revoked_at=now())
    if claimed != 1:
        raise DomainError("token_revoked")
    user = User.objects(id=record.user_id).first()
    if user is None or not user.active or _utc(user.credentials_changed_at) > _utc(record.issued_at):
        raise DomainError("token_revoked")
    return _issue(identity, user, family=record.family)


def logout(principal: Principal, token: str | None) -> None:
    query = RefreshToken.objects(user_id=principal.user_id, revoked_at=None)
    if token:
        query = query.filter(token_hash=_hash_token(token))
    query.update(set__revoked_at=now())


def change_password(principal: Principal, current: str, new: str) -> None:
    user = User.objects(id=principal.user_id, active=True).first()
    if user is None:
        raise DomainError("not_found")
    if not verify_password(user.password_hash, current):
        raise DomainError("invalid_credentials", "the current password is wrong")
    check_password_policy(new, username=user.username, old_password=current)
    user.password_hash = hash_password(new)
    user.must_change_password = False
    user.credentials_changed_at = now()
    user.updated_at = now()
    save_with_events(user, [events.user_updated(user, credentials_changed=True)])
    RefreshToken.objects(user_id=user.id, revoked_at=None).update(set__revoked_at=now())


# ---- schools ---------------------------------------------------------------------------------------------

def visible_school(principal: Principal, code: str) -> School:
    school = School.objects(code=code).first()
    if school is None or not principal.can_see_school(code, school.city):
        raise DomainError("not_found", f"no school {code}")
    return school


def list_schools(principal: Principal) -> list[School]:
    if principal.school is not None:
        return list(School.objects(code=principal.school))
    return list(School.objects(city=principal.city).order_by("code"))


def create_school(principal: Principal, code: str, name: str) -> School:
    if not principal.is_city_admin:
        raise DomainError("forbidden")
    if School.objects(code=code).first() is not None:
        raise DomainError("conflict", f"school {code} exists")
    school = School(code=code, name=name, city=principal.city)
    return save_with_events(school, [events.school_created(school)])


def update_school(principal: Principal, code: str, name: str) -> School:
    school = visible_school(principal, code)
    if not (principal.is_city_admin or principal.has("school_admin")):
        raise DomainError("forbidden")
    school.name = name
    school.updated_at = now()
    return save_with_events(school, [events.school_updated(school)])


def deactivate_school(principal: Principal, code: str) -> School:
    school = visible_school(principal, code)
    if not principal.is_city_admin:
        raise DomainError("forbidden")
    if not school.active:
        return school
    school.active = False
    school.updated_at = now()
    save_with_events(school, [events.school_deactivated(school, school.updated_at)])
    RefreshToken.objects(school=code, revoked_at=None).update(set__revoked_at=now())
    return school


# ---- users -----------------------------------------------------------------------------------------------

def _can_manage(principal: Principal, roles: list[str]) -> bool:
    if principal.has(*USER_MANAGERS):
        return "city_admin" not in roles
    return principal.has(*STUDENT_MANAGERS) and set(roles) == {"student"}


def visible_user(principal: Principal, user_id: str) -> User:
    user = User.objects(id=user_id).first()
    if user is None or user.school is None:
        raise DomainError("not_found")
    school = School.objects(code=user.school).first()
    if school is None or not principal.can_see_school(user.school, school.city):
        raise DomainError("not_found")
    if principal.user_id != user.id and not principal.has(*STAFF_ROLES, "city_admin"):
        raise DomainError("not_found")
    return user


def list_users(principal: Principal, school_code: str, *, role: str | None, class_name: str | None,
               query: str | None, offset: int, limit: int) -> tuple[int, list[User]]:
    visible_school(principal, school_code)
    if not principal.has(*STAFF_ROLES, "city_admin"):
        raise DomainError("forbidden")
    filters = {"school": school_code}
    if role:
        filters["roles"] = role
    if class_name:
        filters["student__class_name"] = class_name
    users = User.objects(**filters)
    if query:
        users = users.filter(__raw__={"$or": [{"username": {"$regex": f"^{_escape(query)}"}},
                                              {"display_name": {"$regex": _escape(query)}},
                                              {"student.student_no": {"$regex": f"^{_escape(query)}"}}]})
    total = users.count()
    return total, list(users.order_by("username").skip(offset).limit(limit))


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def _check_roles(roles: list[str]) -> None:
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise DomainError("validation_failed", f"unknown roles: {unknown}" if unknown else "at least one role")
    if "city_admin" in roles:
        raise DomainError("forbidden", "city admins are not school users")


def student_record(identity: Identity, school: str, *, student_no: str, class_name: str, grade: int, status: str,
                   national_id: str) -> StudentRecord:
    sealed, lookup, masked = identity.vault.seal(school, normalise_national_id(national_id))
    return StudentRecord(student_no=student_no, class_name=class_name, grade=grade, status=status,
                         national_id_enc=sealed, national_id_hash=lookup, national_id_masked=masked)


def create_user(identity: Identity, principal: Principal, school_code: str, *, username: str, display_name: str,
                roles: list[str], password: str, homeroom_class: str | None = None, student: dict | None = None) -> User:
    school = visible_school(principal, school_code)
    _check_roles(roles)
    if not _can_manage(principal, roles):
        raise DomainError("forbidden")
    if ("student" in roles) != (student is not None):
        raise DomainError("validation_failed", "student data is required exactly for student accounts")
    check_password_policy(password, username=username)
    user = User(school=school.code, city=school.city, username=username, display_name=display_name, roles=roles,
                homeroom_class=homeroom_class, password_hash=hash_password(password), must_change_password=True)
    if student is not None:
        user.student = student_record(identity, school.code, **student)
    try:
        return save_with_events(user, [events.user_created(user)])
    except NotUniqueError as exc:
        raise DomainError("conflict", "username or student number already used in this school") from exc


def update_user(identity: Identity, principal: Principal, user_id: str, changes: dict) -> User:
    user = visible_user(principal, user_id)
    if not _can_manage(principal, list(user.roles)):
        raise DomainError("forbidden")
    if not user.active:
        raise DomainError("conflict", "the account is deactivated")
    if "roles" in changes and changes["roles"] is not None:
        _check_roles(changes["roles"])
        if ("student" in changes["roles"]) != ("student" in user.roles) or not _can_manage(principal, changes["roles"]):
            raise DomainError("forbidden", "cannot turn a student into staff or the other way round")
        user.roles = changes["roles"]
    for field in ("display_name", "homeroom_class"):
        if changes.get(field) is not None:
            setattr(user, field, changes[field])
    student_changes = changes.get("student") or {}
    if student_changes:
        if user.student is None:
            raise DomainError("validation_failed", "not a student account")
        for field in ("class_name", "grade", "status"):
            if student_changes.get(field) is not None:
                setattr(user.student, field, student_changes[field])
        if student_changes.get("national_id"):
            sealed, lookup, masked = identity.vault.seal(user.school, normalise_national_id(student_changes["national_id"]))
            user.student.national_id_enc, user.student.national_id_hash, user.student.national_id_masked = sealed, lookup, masked
    user.updated_at = now()
    if user.student is not None and user.student.status == "graduated":
        return _deactivate(user, "graduated", extra=[events.user_updated(user)])
    try:
        return save_with_events(user, [events.user_updated(user)])
    except NotUniqueError as exc:
        raise DomainError("conflict", "student number already used in this school") from exc


def _deactivate(user: User, reason: str, extra: list[dict] | None = None) -> User:
    user.active = False
    user.updated_at = now()
    save_with_events(user, list(extra or []) + [events.user_deactivated(user, user.updated_at, reason)])
    RefreshToken.objects(user_id=user.id, revoked_at=None).update(set__revoked_at=now())
    return user


def deactivate_user(principal: Principal, user_id: str, reason: str) -> User:
    user = visible_user(principal, user_id)
    if not _can_manage(principal, list(user.roles)) or user.id == principal.user_id:
        raise DomainError("forbidden")
    return user if not user.active else _deactivate(user, reason)


def reset_password(principal: Principal, user_id: str) -> tuple[User, str]:
    """Staff reset: a one-time password the user must change at the next sign-in."""
    user = visible_user(principal, user_id)
    if not _can_manage(principal, list(user.roles)):
        raise DomainError("forbidden")
    temporary = secrets.token_urlsafe(9)
    user.password_hash = hash_password(temporary)
    user.must_change_password = True
    user.credentials_changed_at = now()
    user.updated_at = now()
    save_with_events(user, [events.user_updated(user, credentials_changed=True)])
    RefreshToken.objects(user_id=user.id, revoked_at=None).update(set__revoked_at=now())
    LoginThrottle.objects(key=f"{user.school}:{user.username.lower()}").delete()
    return user, temporary


def find_student(identity: Identity, principal: Principal, school_code: str, national_id: str) -> User:
    visible_school(principal, school_code)
    if not principal.has("registrar", "school_admin", "counselling_office", "city_admin"):
        raise DomainError("forbidden")
    lookup = identity.vault.lookup_hash(school_code, normalise_national_id(national_id))
    user = User.objects(school=school_code, student__national_id_hash=lookup).first()
    if user is None:
        raise DomainError("not_found")
    return user


def me(principal: Principal) -> tuple[User, School | None, City | None]:
    user = User.objects(id=principal.user_id).first()
    if user is None or not user.active:
        raise DomainError("account_inactive")
    school = School.objects(code=user.school).first() if user.school else None
    return user, school, City.objects(code=user.city).first()


# ---- bootstrap ------------------------------------------------------------------------------------------

def ensure_city(code: str, name: str) -> City:
    city = City.objects(code=code).first()
    return city or City(code=code, name=name).save(force_insert=True)


def ensure_city_admin(city: str, username: str, password: str, display_name: str, *, must_change: bool = True) -> User:
    user = User.objects(school=None, city=city, username=username).first()
    if user is None:
        user = User(school=None, city=city, username=username, display_name=display_name, roles=["city_admin"],
                    password_hash=hash_password(password), must_change_password=must_change)
        save_with_events(user, [events.user_created(user)])
    return user


DEMO_PASSWORD = "footprint-demo"


def seed_demo(identity: Identity) -> dict:
    """The embedded run's demo city and schools (idempotent). Never run against a real deployment."""
    ensure_city("TPE", "臺北市")
    ensure_city_admin("TPE", "cityadmin", DEMO_PASSWORD, "臺北市管理者", must_change=False)
    for code, name in (("999001", "足跡示範高級中學"), ("999002", "足跡實驗高級中學")):
        if School.objects(code=code).first() is None:
            school = School(code=code, name=name, city="TPE")
            save_with_events(school, [events.school_created(school)])
    accounts = [
        ("admin", "示範學校管理者", ["school_admin", "registrar", "curriculum"], None, None),
        ("teacher01", "王老師", ["subject_teacher", "homeroom_teacher"], "101", None),
        ("student01", "林同學", ["student"], None,
         {"student_no": "1120001", "class_name": "101", "grade": 10, "status": "enrolled", "national_id": "A123456789"}),
    ]
    for code in ("999001", "999002"):
        for username, name, roles, homeroom, student in accounts:
            if User.objects(school=code, username=username).first() is None:
                user = User(school=code, city="TPE", username=username, display_name=name, roles=roles,
                            homeroom_class=homeroom, password_hash=hash_password(DEMO_PASSWORD), must_change_password=False)
                if student:
                    user.student = student_record(identity, code, **student)
                save_with_events(user, [events.user_created(user)])
    return {"school": "999001", "users": [a[0] for a in accounts], "password": DEMO_PASSWORD,
            "city_admin": {"city": "TPE", "username": "cityadmin"}}
