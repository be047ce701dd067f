"""The wire contract with the ministry's central database (學生學習歷程資料庫): submission packages and 收訖明細.

There is no public specification of the central side's API, so this module is the contract both ends of the
project agree on: the exchange service builds and sends `Package`s, the central database sandbox
(`deploy/central_sandbox.py`) validates them and answers with a `Receipt`. Everything a school sends is here
and nothing else: the counselling records (課程諮詢紀錄) are school-only and have no place in a package.

A package is immutable once built. Its ``package_sha256`` is the sha256 of the canonical JSON of its content
(`canonical_digest`), so the central side can tell "the same package again" (answer with the same receipt) from
"a different package under the same id" (refuse it).
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCOPES = ("term", "year")  # basic data and course records every term; selected outcomes and performances yearly
RECEIPT_KINDS = ("cadres", "course_records", "outcomes", "performances")  # the four kinds of 收訖明細
KINDS_OF_SCOPE = {"term": ("cadres", "course_records"), "year": ("outcomes", "performances")}
SCHOOL = r"^[0-9]{6}$"
TERM = r"^[0-9]{3}0[12]$"  # 112學年度第1學期 = 11201
SHA256 = re.compile(r"^[0-9a-f]{64}$")
COURSE_CODE = re.compile(r"^[0-9A-Z]{23}$")
DOCUMENT_TYPES = {"application/pdf", "image/jpeg", "image/png"}
MEDIA_TYPES = {"audio/mpeg", "video/mp4"}
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
MAX_MEDIA_BYTES = 10 * 1024 * 1024
MAX_BRIEF = 100
NATIONAL_CAPS = {"outcomes": 6, "performances": 10}  # selected per student per academic year


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileEntry(Strict):
    name: str = Field(min_length=1, max_length=255)
    media_type: str
    size: int = Field(ge=1)
    sha256: str


class CadreRow(Strict):
    key: str = Field(min_length=1, max_length=80)  # stable across versions: what a dispute and a correction name
    unit: str = Field(min_length=1, max_length=60)
    role: str = Field(min_length=1, max_length=60)
    starts_on: str | None = None
    ends_on: str | None = None


class CourseRecordRow(Strict):
    key: str = Field(min_length=1, max_length=80)
    course_code: str
    name: str = Field(min_length=1, max_length=120)
    credits: int = Field(ge=0, le=30)
    score: float | None = None
    passed: bool | None = None


class OutcomeRow(Strict):
    key: str = Field(min_length=1, max_length=80)
    course_code: str
    title: str = Field(min_length=1, max_length=120)
    brief: str = ""
    files: list[FileEntry] = Field(default_factory=list)


class PerformanceRow(Strict):
    key: str = Field(min_length=1, max_length=80)
    category: str = Field(min_length=1, max_length=40)
    title: str = Field(min_length=1, max_length=120)
    brief: str = ""
    files: list[FileEntry] = Field(default_factory=list)
    links: list[str] = Field(default_factory=list)


class StudentRows(Strict):
    student_id: str = Field(min_length=1, max_length=64)
    cadres: list[CadreRow] = Field(default_factory=list)
    course_records: list[CourseRecordRow] = Field(default_factory=list)
    outcomes: list[OutcomeRow] = Field(default_factory=list)
    performances: list[PerformanceRow] = Field(default_factory=list)


class Package(Strict):
    package_id: str = Field(min_length=1, max_length=120)
    school: str = Field(pattern=SCHOOL)
    term: str = Field(pattern=TERM)
    scope: Literal["term", "year"]
    version: int = Field(ge=1)
    built_at: str
    # A correction names the rows it replaces (only the changed rows are sent again); None = a full package.
    corrects_version: int | None = None
    students: list[StudentRows]
    package_sha256: str


class ReceiptRow(Strict):
    key: str
    status: Literal["received", "rejected"]
    reason: str | None = None
    sha256: list[str] = Field(default_factory=list)  # outcomes and performances: what the central side holds


class ReceiptKind(Strict):
    received: int
    rejected: int
    rows: list[ReceiptRow]


class StudentReceipt(Strict):
    student_id: str
    cadres: ReceiptKind | None = None
    course_records: ReceiptKind | None = None
    outcomes: ReceiptKind | None = None
    performances: ReceiptKind | None = None


class Receipt(Strict):
    receipt_id: str
    package_id: str
    school: str
    term: str
    scope: Literal["term", "year"]
    version: int
    package_sha256: str
    received_at: str
    students: list[StudentReceipt]


def canonical_digest(content: dict) -> str:
    """sha256 of a package's content (every field but ``package_sha256``) as canonical JSON."""
    body = {key: value for key, value in content.items() if key != "package_sha256"}
    text = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def package_id(school: str, term: str, scope: str, version: int) -> str:
    return f"{school}-{term}-{scope}-v{version}"


def academic_year(term: str) -> str:
    return term[:3]
