"""Building a package: a snapshot of the projections, turned into the rows of shared/central.py, stored whole.

**Snapshot (double collect).** Every row a package is made of is read with its ``rev`` (incremented by every
write a consumer applies); then the rows' ids and revs are read again. Equal sets mean no row changed, appeared
or disappeared between the two reads, so the rows read are the projection as it stood at one instant (the
moment between the two reads): an edit that arrives during a build is in the package whole or not at all,
never half. A change in between makes it read again (``SNAPSHOT_TRIES``), then give up for this round (the job
tries again). A year package is built from locked selections: nothing moves under it at all.

**Complete projection.** Events come out of order across queues. A term package needs the section of every
enrolment (else: not yet); a year package waits for intake's lock announcement and for the selections it
counted (``students``) at the revisions it counted (their sum): each projected revision is at most the real one,
so equal sums mean every selection is the locked one.

**Immutable body.** The package (every student's rows, every file's sha256) is stored in the media store under
``exchange/<school>/<package id>.<sha256 prefix>.json`` with its sha256 recorded on the package header, and
re-hashed on every read; it never changes after that.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from shared.central import KINDS_OF_SCOPE
from shared.storage import verified_read

from .models import Cadre, CourseRecord, Package, Section, Selection, YearLock

SNAPSHOT_TRIES = 5


class NotReady(Exception):
    """The projection cannot make this package yet (incomplete, or changing under every try)."""


def _collect(sources: list[tuple[str, type, dict]]) -> dict[str, list[dict]] | None:
    first = {name: list(model._get_collection().find(query)) for name, model, query in sources}
    for name, model, query in sources:
        again = {doc["_id"]: doc.get("rev", 0) for doc in model._get_collection().find(query, {"rev": 1})}
        if again != {doc["_id"]: doc.get("rev", 0) for doc in first[name]}:
            return None
    return first


def snapshot(scope: str, school: str, term: str, year: str) -> dict[str, list[dict]]:
    if scope == "term":
        sources = [("sections", Section, {"school": school, "term": term}),
                   ("course_records", CourseRecord, {"school": school, "term": term}),
                   ("cadres", Cadre, {"school": school, "term": term})]
    else:
        sources = [("selections", Selection, {"school": school, "year": year})]
    for _ in range(SNAPSHOT_TRIES):
        rows = _collect(sources)
        if rows is not None:
            return rows
    raise NotReady("the projection kept changing during the build")


def year_complete(school: str, year: str) -> bool:
    """intake's lock arrived and the projection holds every selection it counted, at the revision it counted."""
    lock = YearLock.objects(id=f"{school}:{year}").first()
    if lock is None:
        return False
    revisions = [s.revision for s in Selection.objects(school=school, year=year).only("revision")]
    return len(revisions) >= lock.students and (lock.revisions is None or sum(revisions) >= lock.revisions)


def canonical(value) -> str:
    """JSON as shared.central.canonical_digest writes it (sorted keys, no spaces, UTF-8 as is)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Rows:
    """One kind of one student's rows: how many, and the list as canonical JSON (made once; a build stitches)."""

    count: int
    text: str

    @classmethod
    def of(cls, rows: list[dict]) -> "Rows":
        return cls(len(rows), canonical(sorted(rows, key=lambda row: row["key"])))

    def rows(self) -> list[dict]:
        return json.loads(self.text)


def _files(files: list[dict]) -> list[dict]:
    return [{"name": f["name"][:255], "media_type": f["media_type"], "size": f["size"], "sha256": f["sha256"]}
            for f in files]


def selection_rows(outcomes: list[dict], performances: list[dict]) -> dict[str, dict]:
    """A selection's rows in the central contract's shape, made when the selection arrives (stored on the
    projection as {kind: {"count", "text"}}), so a build of thousands of students only joins strings."""
    made = {
        "outcomes": Rows.of([{"key": o["outcome_id"], "course_code": o["course_code"],
                              "title": (o.get("subject_name") or o["course_code"])[:120],
                              "brief": o.get("brief") or "", "files": _files(o["files"])} for o in outcomes]),
        "performances": Rows.of([{"key": p["performance_id"], "category": p["category"][:40], "title": p["name"][:120],
                                  "brief": p.get("brief") or "", "files": _files(p["files"]),
                                  "links": list(p.get("links") or [])} for p in performances])}
    return {kind: {"count": rows.count, "text": rows.text} for kind, rows in made.items()}


def student_rows(scope: str, snap: dict[str, list[dict]]) -> dict[str, dict[str, Rows]]:
    """student id -> kind -> rows (central contract shape, ordered by key): the same data, the same bytes."""
    if scope == "year":
        students = {s["student_id"]: {kind: Rows(**s["rows"][kind]) for kind in KINDS_OF_SCOPE["year"]}
                    for s in snap["selections"]}
        return {student: kinds for student, kinds in students.items() if any(r.count for r in kinds.values())}
    lists: dict[str, dict[str, list[dict]]] = {}

    def rows_of(student: str) -> dict[str, list[dict]]:
        return lists.setdefault(student, {kind: [] for kind in KINDS_OF_SCOPE["term"]})

    sections = {s["_id"]: s for s in snap["sections"]}
    for record in snap["course_records"]:
        if record.get("active") is False or not record.get("student_id"):
            continue
        section = sections.get(record.get("section_id"))
        if section is None or not section.get("course_code"):
            raise NotReady(f"section {record.get('section_id')} of enrolment {record['_id']} is not known yet")
        rows_of(record["student_id"])["course_records"].append({
            "key": record["_id"], "course_code": section["course_code"],
            "name": (section.get("subject_name") or section["course_code"])[:120],
            "credits": section.get("credits") or 0, "score": record.get("score"), "passed": record.get("passed")})
    for cadre in snap["cadres"]:
        if cadre.get("active") is False or not cadre.get("unit"):
            continue
        rows_of(cadre["student_id"])["cadres"].append({"key": cadre["_id"], "unit": cadre["unit"][:60],
                                                        "role": cadre["title"][:60]})
    return {student: {kind: Rows.of(rows) for kind, rows in kinds.items()} for student, kinds in lists.items()}


def row_digest(row: dict) -> str:
    return hashlib.sha256(canonical(row).encode()).hexdigest()


def changed_rows(current: dict[str, dict[str, Rows]], sent: dict[tuple[str, str, str], str],
                 always: set[tuple[str, str, str]]) -> dict[str, dict[str, Rows]]:
    """The rows of ``current`` that differ from what was sent (``sent``: (student, kind, key) -> row digest), plus
    those in ``always`` (rows the central side holds wrong although ours did not change)."""
    changed: dict[str, dict[str, Rows]] = {}
    for student, kinds in current.items():
        found = {kind: [row for row in rows.rows()
                        if (student, kind, row["key"]) in always or sent.get((student, kind, row["key"])) != row_digest(row)]
                 for kind, rows in kinds.items()}
        if any(found.values()):
            changed[student] = {kind: Rows.of(rows) for kind, rows in found.items()}
    return changed


def package_body(package: Package, rows: dict[str, dict[str, Rows]], built_at: datetime) -> tuple[str, bytes]:
    """(package_sha256, body): the canonical JSON of the content is joined from the rows' canonical texts (what
    canonical_digest would write for the whole content, without parsing a single row again), hashed, and sent
    with its ``package_sha256`` added."""
    head = canonical({"package_id": package.id, "school": package.school, "term": package.term,
                      "scope": package.scope, "version": package.version, "built_at": built_at.isoformat(),
                      "corrects_version": package.corrects_version, "students": None})
    students = ",".join("{" + ",".join(f"{canonical(key)}:{text}" for key, text in sorted(
        [("student_id", canonical(student))] + [(kind, r.text) for kind, r in rows[student].items()])) + "}"
        for student in sorted(rows))
    assert head.count('"students":null') == 1
    content = head.replace('"students":null', f'"students":[{students}]')
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()
    return digest, (content[:-1] + f',"package_sha256":"{digest}"}}').encode("utf-8")


def store_body(store, package: Package, rows: dict[str, dict[str, Rows]], built_at: datetime) -> dict:
    """Write the body to the media store; returns the header fields that record it (set them in one write)."""
    digest, data = package_body(package, rows, built_at)
    body_sha256 = hashlib.sha256(data).hexdigest()
    # Named by its bytes: a second builder of the same package (one whose claim ran out) writes another object,
    # never over the one the header records.
    key = f"exchange/{package.school}/{package.id}.{body_sha256[:16]}.json"
    store.put(key, [data], length=len(data), content_type="application/json")
    return {"built_at": built_at, "package_sha256": digest, "body_key": key, "body_sha256": body_sha256,
            "body_size": len(data), "students": len(rows),
            "rows": {kind: sum(s[kind].count for s in rows.values()) for kind in KINDS_OF_SCOPE[package.scope]}}


def read_body(store, package: Package) -> bytes:
    """The stored body, checked against its recorded sha256 (a changed object raises, never goes out)."""
    def refuse(message: str) -> None:
        raise IOError(f"package {package.id}: {message}")

    with store.fetch(package.body_key) as fetched:
        return b"".join(verified_read(iter(fetched), package.body_size, package.body_sha256, refuse))


def sent_rows(store, packages: list[Package]) -> dict[tuple[str, str, str], str]:
    """What the central side was sent, row by row (later versions over earlier): (student, kind, key) -> digest."""
    sent: dict[tuple[str, str, str], str] = {}
    for package in sorted(packages, key=lambda p: p.version):
        for student in json.loads(read_body(store, package))["students"]:
            for kind in KINDS_OF_SCOPE[package.scope]:
                for row in student.get(kind, []):
                    sent[(student["student_id"], kind, row["key"])] = row_digest(row)
    return sent
