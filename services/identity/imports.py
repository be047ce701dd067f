"""Bulk import of students and teachers from the CSV/XLSX files school staff keep.

Rules: every row is checked on its own and reported with its spreadsheet row number; rejected rows write
nothing; accepted rows are written even when others are rejected (the report says which); importing the
same file again changes nothing (each user remembers the fingerprint of the row that last wrote it).
Headers may be Chinese or English. CSV may be UTF-8 (with or without BOM) or Big5/CP950 as Excel saves it.
"""
from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO

from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.auth import Principal
from shared.errors import DomainError, field_error
from shared.spreadsheets import read_rows
from shared.outbox import insert_with_events, save_with_events

from . import events
from .domain import Identity, _can_manage, _deactivate, visible_school
from .models import StudentRecord, User, now
from .security import hash_password, normalise_national_id

MAX_ROWS = 20000

STUDENT_COLUMNS = {
    "學號": "student_no", "student_no": "student_no", "姓名": "name", "name": "name", "班級": "class_name",
    "class": "class_name", "class_name": "class_name", "年級": "grade", "grade": "grade", "身分證字號": "national_id",
    "身分證統一編號": "national_id", "居留證號": "national_id", "national_id": "national_id", "帳號": "username",
    "username": "username", "初始密碼": "password", "密碼": "password", "password": "password", "學籍狀態": "status",
    "status": "status",
}
TEACHER_COLUMNS = {
    "帳號": "username", "username": "username", "姓名": "name", "name": "name", "角色": "roles", "roles": "roles",
    "導師班級": "homeroom_class", "homeroom_class": "homeroom_class", "初始密碼": "password", "密碼": "password",
    "password": "password",
}
REQUIRED = {"students": {"student_no", "name", "class_name", "grade", "national_id"},
            "teachers": {"username", "name", "roles"}}
STATUS_NAMES = {"在學": "enrolled", "休學": "suspended", "轉出": "transferred", "畢業": "graduated",
                "enrolled": "enrolled", "suspended": "suspended", "transferred": "transferred", "graduated": "graduated"}
ROLE_NAMES = {"任課教師": "subject_teacher", "課程諮詢教師": "course_counsellor", "導師": "homeroom_teacher",
              "註冊組": "registrar", "教學組": "curriculum", "學務處": "student_affairs", "訓育組": "student_affairs",
              "生輔組": "student_affairs", "輔導室": "counselling_office", "學校管理者": "school_admin"}
STAFF_ROLE_CODES = set(ROLE_NAMES.values())
USERNAME = re.compile(r"^[A-Za-z0-9._-]{2,40}$")


@dataclass
class RowResult:
    row: int
    values: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)

    def error(self, column: str, code: str, en: str, zh: str) -> None:
        self.errors.append(field_error(column, code, en, zh))


def _parse(kind: str, stream: IO[bytes]) -> list[RowResult]:
    columns_map = STUDENT_COLUMNS if kind == "students" else TEACHER_COLUMNS
    rows = read_rows(stream)
    header = next(rows, None)
    if not header:
        raise DomainError("invalid_import_file", "the file is empty")
    columns = [columns_map.get(h.strip().lstrip("\ufeff").lower() if h.strip().isascii() else h.strip()) for h in header]
    missing = REQUIRED[kind] - set(columns)
    if missing:
        raise DomainError("invalid_import_file", f"missing columns: {sorted(missing)}",
                          errors=[field_error(m, "missing_column", f"column {m} is missing", f"缺少欄位 {m}") for m in sorted(missing)])
    results = []
    for number, values in enumerate(rows, start=2):
        if not any(v.strip() for v in values):
            continue
        if len(results) >= MAX_ROWS:
            raise DomainError("payload_too_large", f"at most {MAX_ROWS} rows per file")
        results.append(RowResult(number, {c: v.strip() for c, v in zip(columns, values) if c}))
    return results


# What the documents allow: checked per row, so a long cell rejects its row instead of failing the import.
LENGTHS = {"name": 60, "class_name": 20, "homeroom_class": 20, "password": 256, "username": 40}


def _check_lengths(result: RowResult) -> None:
    for column, limit in LENGTHS.items():
        if len(result.values.get(column) or "") > limit:
            result.error(column, "too_long", f"at most {limit} characters", f"最多 {limit} 個字")


def _check_student(result: RowResult, school: str, identity: Identity) -> None:
    v = result.values
    _check_lengths(result)
    for column in REQUIRED["students"]:
        if not v.get(column):
            result.error(column, "required", f"{column} is required", f"{column} 為必填")
    if v.get("grade") and v["grade"] not in ("10", "11", "12"):
        result.error("grade", "invalid_grade", "grade must be 10, 11 or 12", "年級必須是 10、11 或 12")
    if v.get("national_id"):
        try:
            v["national_id"] = normalise_national_id(v["national_id"])
        except DomainError:
            result.error("national_id", "invalid_national_id", "malformed or wrong check digit", "身分證字號格式或檢查碼錯誤")
    v["status"] = STATUS_NAMES.get(v.get("status") or "在學", "")
    if not v["status"]:
        result.error("status", "invalid_status", "status must be 在學/休學/轉出/畢業", "學籍狀態必須是 在學、休學、轉出 或 畢業")
    v["username"] = v.get("username") or v.get("student_no", "")
    if v.get("student_no") and not re.fullmatch(r"[A-Za-z0-9]{1,20}", v["student_no"]):
        result.error("student_no", "invalid_student_no", "letters and digits only, at most 20", "學號限英數字，最多 20 字")


def _check_teacher(result: RowResult) -> None:
    v = result.values
    _check_lengths(result)
    for column in REQUIRED["teachers"]:
        if not v.get(column):
            result.error(column, "required", f"{column} is required", f"{column} 為必填")
    roles = []
    for name in re.split(r"[;,、，；\s]+", v.get("roles", "")):
        if not name:
            continue
        code = ROLE_NAMES.get(name, name if name in STAFF_ROLE_CODES else None)
        if code is None:
            result.error("roles", "invalid_role", f"unknown role {name}", f"未知的角色 {name}")
        elif code not in roles:
            roles.append(code)
    v["roles"] = roles
    if "homeroom_teacher" in roles and not v.get("homeroom_class"):
        result.error("homeroom_class", "required", "homeroom teachers need a class", "導師須填導師班級")


def _fingerprint(kind: str, school: str, v: dict, identity: Identity) -> str:
    parts = [kind, school] + [f"{k}={v.get(k, '')}" for k in sorted(v) if k not in ("password", "national_id")]
    if kind == "students":
        parts.append(identity.vault.lookup_hash(school, v["national_id"]))
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def import_users(identity: Identity, principal: Principal, school_code: str, kind: str, stream: IO[bytes], *,
                 dry_run: bool = False) -> dict:
    if kind not in REQUIRED:
        raise DomainError("not_found")
    school = visible_school(principal, school_code)
    if not _can_manage(principal, ["student"] if kind == "students" else ["subject_teacher"]):
        raise DomainError("forbidden")
    results = _parse(kind, stream)
    existing = {u.username: u for u in User.objects(school=school.code)}
    by_student_no = {u.student.student_no: u for u in existing.values() if u.student is not None}
    seen_keys: set[str] = set()
    creates, updates, unchanged = [], [], 0
    for result in results:
        (_check_student(result, school.code, identity) if kind == "students" else _check_teacher(result))
        v = result.values
        if result.errors:
            continue
        key = v["student_no"] if kind == "students" else v["username"]
        if key in seen_keys or v["username"] in seen_keys:
            result.error("student_no" if kind == "students" else "username", "duplicate_in_file",
                         "appears twice in this file", "檔案中重複出現")
            continue
        seen_keys.update({key, v["username"]})
        if not USERNAME.match(v["username"]):
            result.error("username", "invalid_username", "2-40 letters, digits, . _ -", "帳號須為 2–40 個英數字或 . _ -")
            continue
        match = by_student_no.get(key) if kind == "students" else existing.get(key)
        holder = existing.get(v["username"])
        if holder is not None and holder is not match:
            result.error("username", "username_taken", "the username belongs to another account", "此帳號已被其他使用者使用")
            continue
        if match is not None and (("student" in match.roles) != (kind == "students")):
            result.error("username", "username_taken", "the username belongs to another kind of account", "此帳號屬於其他類型的使用者")
            continue
        fingerprint = _fingerprint(kind, school.code, v, identity)
        if match is not None and match.import_fingerprint == fingerprint:
            unchanged += 1
        elif match is not None:
            updates.append((match, v, fingerprint))
        elif not v.get("password"):
            result.error("password", "required", "new accounts need an initial password", "新帳號須提供初始密碼")
        elif len(v["password"]) < 6:
            result.error("password", "weak_password", "initial passwords need 6+ characters", "初始密碼至少 6 個字元")
        else:
            creates.append((v, fingerprint))
    rejected = [r for r in results if r.errors]
    report = {"kind": kind, "school": school.code, "dry_run": dry_run, "rows": len(results), "created": len(creates),
              "updated": len(updates), "unchanged": unchanged, "rejected": len(rejected),
              "errors": [{"row": r.row, "errors": r.errors} for r in rejected]}
    if dry_run:
        return report
    _create(identity, school, kind, creates)
    for user, v, fingerprint in updates:
        _apply(identity, user, kind, v)
        user.import_fingerprint = fingerprint
        user.updated_at = now()
        if user.active and user.student is not None and user.student.status == "graduated":
            _deactivate(user, "graduated", extra=[events.user_updated(user)])  # as a staff edit would
        else:
            save_with_events(user, [events.user_updated(user)])
    return report


def _student(identity: Identity, school: str, v: dict) -> StudentRecord:
    sealed, lookup, masked = identity.vault.seal(school, v["national_id"])
    return StudentRecord(student_no=v["student_no"], class_name=v["class_name"], grade=int(v["grade"]),
                         status=v["status"], national_id_enc=sealed, national_id_hash=lookup, national_id_masked=masked)


def _apply(identity: Identity, user: User, kind: str, v: dict) -> None:
    user.display_name = v["name"]
    if kind == "students":
        user.student = _student(identity, user.school, v)
    else:
        user.roles = v["roles"]
        user.homeroom_class = v.get("homeroom_class") or None


def _create(identity: Identity, school, kind: str, creates: list[tuple[dict, str]]) -> None:
    if not creates:
        return
    # argon2 runs in C without the GIL: hash the initial passwords on every core.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        hashes = list(pool.map(lambda item: hash_password(item[0]["password"], initial=True), creates, chunksize=64))
    users = []
    for (v, fingerprint), password_hash in zip(creates, hashes):
        user = User(school=school.code, city=school.city, username=v["username"], display_name=v["name"],
                    roles=["student"] if kind == "students" else v["roles"], password_hash=password_hash,
                    must_change_password=True, import_fingerprint=fingerprint)
        if kind == "students":
            user.student = _student(identity, school.code, v)
            user.active = v["status"] != "graduated"  # a graduate's record, without a usable account
        else:
            user.homeroom_class = v.get("homeroom_class") or None
        users.append(user)

    def facts(user: User) -> list[dict]:
        made = [events.user_created(user)]
        return made if user.active else made + [events.user_deactivated(user, user.created_at, "graduated")]

    try:
        insert_with_events(users, facts)
    except (BulkWriteError, DuplicateKeyError):
        # Another import of the same school ran meanwhile. Rows written stay written; importing again is
        # idempotent and finishes the rest. (Never log the documents: they hold password hashes.)
        raise DomainError("conflict", "another import of this school was running; import the file again") from None
