"""A student's portfolio export: a JSON document with every file's sha256 (and the items' metadata, certification
state and selections) and a PDF of the same, its zh-TW text set in Noto Sans CJK TC (from the PyPI package
noto-cjk-sans-otc), embedded as a subset so any reader shows it; a class exported as a zip of those, streamed
student by student (the archive never sits whole in memory).

Who: the student themself (another student's export is 404, as if it did not exist), the homeroom teacher of
the student's class, the registrar and the school admin; another school's student is 404.
"""
from __future__ import annotations

import json
import logging
import zipfile
from datetime import datetime, timezone
from typing import Iterator
from urllib.parse import quote

from flask import Response
from fpdf import FPDF
from noto_cjk_sans_otc import FONT_PATH

from shared.auth import Principal, current_principal, require_auth
from shared.errors import DomainError

from .domain import _homeroom_class
from .models import Directory, FileRecord, Outcome, Performance, School, Selection

log = logging.getLogger("footprint.intake.export")

PREFIX = "/api/v1/intake"
EXPORT_STAFF = ("school_admin", "registrar")
FORMAT = "footprint.portfolio.v1"
TRADITIONAL_CHINESE = 3  # the face of the collection with Taiwan's glyph forms (Noto Sans CJK TC)
STATUS = {"draft": "草稿 draft", "submitted": "已送出認證 submitted", "certified": "已認證 certified",
          "returned": "退回修改 returned"}
CATEGORY = {"competition": "競賽", "licence": "檢定證照", "service_learning": "服務學習", "group_activity": "團體活動",
            "flexible_learning": "彈性學習", "workplace_learning": "職場學習", "other": "其他"}


# ---- who may export whom -------------------------------------------------------------------------------------

def _student(principal: Principal, student_id: str):
    if principal.school is None:
        raise DomainError("not_found")
    entry = Directory.objects(id=student_id, school=principal.school, roles="student").first()
    if principal.user_id == student_id and principal.has("student"):
        return entry or Directory(id=student_id, school=principal.school, display_name=principal.username)
    if entry is None or principal.has("student"):
        raise DomainError("not_found")  # students cannot learn whether another student exists
    if principal.has(*EXPORT_STAFF) or (entry.class_name and _homeroom_class(principal) == entry.class_name):
        return entry
    raise DomainError("forbidden")


def _class_students(principal: Principal, school: str, class_name: str) -> list:
    if principal.school != school:
        raise DomainError("not_found")
    if not principal.has(*EXPORT_STAFF) and _homeroom_class(principal) != class_name:
        raise DomainError("forbidden")
    students = list(Directory.objects(school=school, class_name=class_name, roles="student", active=True)
                    .order_by("student_no", "id"))
    if not students:
        raise DomainError("not_found", "no students in this class")
    return students


# ---- the document --------------------------------------------------------------------------------------------

def _file(record: FileRecord) -> dict:
    return {"file_id": record.file_id, "name": record.name, "kind": record.kind, "media_type": record.media_type,
            "size": record.size, "sha256": record.sha256, "uploaded_at": _iso(record.uploaded_at),
            "submitted_in": record.submitted_in}


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).isoformat()


def portfolio(student) -> dict:
    """Everything intake keeps of one student, each file with its sha256 (retired ones: removed after a submission,
    kept as evidence)."""
    school = School.objects(code=student.school).first()
    outcomes = Outcome.objects(school=student.school, student_id=student.id, deleted_at=None).order_by("term", "created_at")
    performances = Performance.objects(school=student.school, student_id=student.id,
                                       deleted_at=None).order_by("year", "start_date", "created_at")
    selections = Selection.saved(school=student.school, student_id=student.id).order_by("year")
    return {
        "format": FORMAT,
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "school": {"code": student.school, "name": school.name if school else ""},
        "student": {"id": student.id, "student_no": student.student_no, "name": student.display_name or "",
                    "class_name": student.class_name, "grade": student.grade},
        "outcomes": [{
            "id": o.id, "term": o.term, "course_code": o.course_code, "subject_name": o.subject_name or "",
            "brief": o.brief or "", "status": o.status, "submission": o.submission,
            "submitted_at": _iso(o.submitted_at), "certified_at": _iso(o.certified_at),
            "files": [_file(f) for f in o.files], "retired_files": [_file(f) for f in o.retired_files]}
            for o in outcomes],
        "performances": [{
            "id": p.id, "year": p.year, "term": p.term, "category": p.category, "name": p.name,
            "organiser": p.organiser or "", "start_date": p.start_date, "end_date": p.end_date, "hours": p.hours,
            "result": p.result or "", "brief": p.brief or "", "links": list(p.links),
            "files": [_file(f) for f in p.files], "retired_files": [_file(f) for f in p.retired_files]}
            for p in performances],
        "selections": [{"year": s.year, "revision": s.revision, "locked": s.locked_at is not None,
                        "outcome_ids": list(s.outcome_ids), "performance_ids": list(s.performance_ids)}
                       for s in selections],
    }


def portfolio_json(document: dict) -> bytes:
    return json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")


class _Pdf(FPDF):
    def __init__(self):
        super().__init__(format="A4")
        self.add_font("NotoSansTC", "", str(FONT_PATH), collection_font_number=TRADITIONAL_CHINESE)
        self.set_auto_page_break(True, margin=15)
        self.add_page()

    def line_of(self, text: str, size: float = 10.5, height: float = 6) -> None:
        self.set_font("NotoSansTC", size=size)
        self.multi_cell(0, height, text, align="L", new_x="LMARGIN", new_y="NEXT")

    def files(self, files: list[dict]) -> None:
        for f in files:
            self.line_of(f"　檔案 file: {f['name']} ({f['media_type']}, {f['size']} bytes)", 9, 5)
            self.line_of(f"　sha256: {f['sha256']}", 8, 4.5)


def portfolio_pdf(document: dict) -> bytes:
    student, school = document["student"], document["school"]
    pdf = _Pdf()
    pdf.line_of("學生學習歷程檔案 Student Learning Portfolio", 18, 10)
    pdf.line_of(f"{school['name']}（{school['code']}）")
    pdf.line_of(f"學生 student: {student['name']}　學號 No.: {student['student_no'] or ''}　"
                f"班級 class: {student['class_name'] or ''}　年級 grade: {student['grade'] or ''}")
    pdf.line_of(f"匯出時間 exported at: {document['generated_at']}", 9, 5)
    pdf.ln(3)
    pdf.line_of(f"課程學習成果 Course outcomes（{len(document['outcomes'])}）", 14, 9)
    for o in document["outcomes"]:
        pdf.line_of(f"{o['term']}　{o['subject_name']}（{o['course_code']}）　{STATUS.get(o['status'], o['status'])}")
        pdf.line_of(f"　簡述 brief: {o['brief']}")
        pdf.files(o["files"])
        pdf.ln(1)
    pdf.line_of(f"多元表現 Diverse performances（{len(document['performances'])}）", 14, 9)
    for p in document["performances"]:
        pdf.line_of(f"{p['year']}學年度　{CATEGORY.get(p['category'], p['category'])}　{p['name']}")
        pdf.line_of(f"　{p['organiser']}　{p['start_date']} – {p['end_date']}　{p['hours']:g} 小時 hours　{p['result']}")
        if p["brief"]:
            pdf.line_of(f"　簡述 brief: {p['brief']}")
        for link in p["links"]:
            pdf.line_of(f"　連結 link: {link}", 9, 5)
        pdf.files(p["files"])
        pdf.ln(1)
    pdf.line_of("勾選 Selections", 14, 9)
    for s in document["selections"]:
        state = "已鎖定 locked" if s["locked"] else "未鎖定 open"
        pdf.line_of(f"{s['year']}學年度：課程學習成果 {len(s['outcome_ids'])} 件、多元表現 {len(s['performance_ids'])} 件"
                    f"（第 {s['revision']} 版，{state}）")
    return bytes(pdf.output())


# ---- a class, streamed ---------------------------------------------------------------------------------------

class _Chunks:
    """A write-only sink zipfile writes into (no seek, no tell: it writes data descriptors); taken after each entry."""

    def __init__(self):
        self._parts: list[bytes] = []

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def _folder(student) -> str:
    name = "".join(c for c in (student.display_name or "") if c not in '/\\:*?"<>|' and ord(c) >= 32)
    return f"{student.student_no or student.id}-{name}".rstrip("-")


def class_zip(students: list) -> Iterator[bytes]:
    sink = _Chunks()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for student in students:
            document = portfolio(student)
            archive.writestr(f"{_folder(student)}/portfolio.json", portfolio_json(document))
            archive.writestr(f"{_folder(student)}/portfolio.pdf", portfolio_pdf(document))
            yield sink.take()
    yield sink.take()


# ---- routes --------------------------------------------------------------------------------------------------

def _attachment(name: str) -> str:
    return f"attachment; filename=\"{quote(name)}\"; filename*=UTF-8''{quote(name)}"


def install_routes(api) -> None:
    """Export routes on intake's Api (so they are in its OpenAPI document)."""

    @api.route("GET", f"{PREFIX}/students/<student_id>/portfolio.<kind>", summary="A student's portfolio as JSON "
               "(outcomes, performances with every file's sha256, certification state, selections) or PDF (the same, "
               "zh-TW, font embedded); the student, the class's homeroom teacher, registrar, school admin",
               tags=["intake-export"])
    @require_auth()
    def portfolio_document(student_id, kind):
        if kind not in ("json", "pdf"):
            raise DomainError("route_not_found", "portfolios come as .json or .pdf")
        document = portfolio(_student(current_principal(), student_id))
        body, media_type = ((portfolio_json(document), "application/json; charset=utf-8") if kind == "json"
                            else (portfolio_pdf(document), "application/pdf"))
        return Response(body, content_type=media_type, headers={
            "Content-Disposition": _attachment(f"portfolio-{student_id}.{kind}"), "Cache-Control": "private, no-store"})

    @api.route("GET", f"{PREFIX}/schools/<code>/classes/<class_name>/portfolios.zip", summary="A class's portfolios "
               "(PDF and JSON per student) as a zip, streamed (homeroom teacher of the class, registrar, school admin)",
               tags=["intake-export"])
    @require_auth()
    def class_portfolios(code, class_name):
        students = _class_students(current_principal(), code, class_name)
        return Response(class_zip(students), content_type="application/zip", direct_passthrough=True, headers={
            "Content-Disposition": _attachment(f"portfolios-{code}-{class_name}.zip"),
            "Cache-Control": "private, no-store"})
