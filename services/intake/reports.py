"""Progress statistics (學習歷程檔案上傳統計), in the shape of Taipei's 108–111 table, per term or school year.

One row: students, students who uploaded a course outcome and those who did not yet, the upload rate, course
outcomes uploaded (live ones with at least one file), outcomes per student, outcomes certified, diverse
performances recorded, course counselling records (課程諮詢紀錄, counted from records.counselling.* only).
A school gets a row per class and its total, plus the files uploaded per day (Taiwan dates); a city admin gets
the city's schools side by side and the city's total. Students are the school's active student accounts as
identity announced them (the directory knows today's roll only: a past year is counted against today's).

Counts come from counters kept per student and period (Progress, see "counting" below) and from the directory,
read on their indexes: a school of 2,000 students and 30,000 outcomes answers in about half a second here under
load (docs/benchmarks.md), where passes over every outcome took 9-15 s on SecantusDB.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator

from flask import Response
from openpyxl import Workbook
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from shared.auth import Principal, current_principal, require_auth
from shared.errors import DomainError
from shared.http import json_response, read_query

from .domain import TAIPEI, _term_code
from .models import CounsellingEntry, Directory, Outcome, Performance, Progress, ProgressMark, School, now

PREFIX = "/api/v1/intake"
REPORT_ROLES = ("school_admin", "registrar", "curriculum")

# The table's columns: key, zh-TW, English (CSV and XLSX headers say both).
COLUMNS = [
    ("students", "學生數", "students"),
    ("students_uploaded", "已上傳學生數", "students who uploaded"),
    ("students_not_uploaded", "未上傳學生數", "students not yet"),
    ("upload_rate", "上傳率", "upload rate"),
    ("outcomes_uploaded", "課程學習成果上傳件數", "course outcomes uploaded"),
    ("outcomes_per_student", "平均每生件數", "outcomes per student"),
    ("outcomes_certified", "認證通過件數", "outcomes certified"),
    ("performances_uploaded", "多元表現件數", "diverse performances"),
    ("counselling_records", "課程諮詢紀錄件數", "course counselling records"),
]


# ---- scope ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scope:
    """A term (``11201``) or a school year (``112``)."""

    term: str | None
    year: str

    @property
    def terms(self) -> list[str]:
        """The stored term codes of the scope: ``11201`` as documented and the older ``1121`` intake accepts."""
        semesters = [self.term[-1]] if self.term else ["1", "2"]
        return [code for s in semesters for code in (f"{self.year}0{s}", f"{self.year}{s}")]

    @property
    def performances(self) -> dict:
        """Performances belong to a school year; in a term view, those recorded with that term."""
        return {"term": {"$in": self.terms}} if self.term else {"year": self.year}

    def label(self) -> str:
        return self.term or self.year


class StatisticsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    term: str | None = Field(default=None, pattern=r"^[0-9]{3}0[12]$", description="a term, e.g. 11201")
    year: str | None = Field(default=None, pattern=r"^[0-9]{3}$", description="or a school year (學年度), e.g. 112")

    @model_validator(mode="after")
    def one_scope(self):
        if (self.term is None) == (self.year is None):
            raise ValueError("give either term or year")
        return self

    def scope(self) -> Scope:
        return Scope(term=self.term, year=self.year or self.term[:3])


# ---- who may see what ----------------------------------------------------------------------------------------

def _school_for(principal: Principal, school: str) -> dict:
    """The school if the caller may see its statistics: its staff, or the admin of its city (another's: 404)."""
    known = School._get_collection().find_one({"_id": school}) or {"_id": school, "name": "", "city": None}
    if principal.school is None:
        if not principal.is_city_admin:
            raise DomainError("forbidden")
        if known.get("city") != principal.city:
            raise DomainError("not_found")
        return known
    if principal.school != school:
        raise DomainError("not_found")
    if not principal.has(*REPORT_ROLES):
        raise DomainError("forbidden")
    return known


def _city_for(principal: Principal, city: str) -> None:
    if not principal.is_city_admin:
        raise DomainError("forbidden")
    if principal.city != city:
        raise DomainError("not_found")


# ---- counting: counters kept per student and period ---------------------------------------------------------
# A statistics request first refreshes the school's Progress counters of the students whose items changed since
# the last refresh (found by the (school, updated_at) index: every write of an outcome or performance sets
# updated_at, certification decisions included), then adds up the counters: a few thousand small documents
# instead of every outcome of the school. A school's first refresh builds all its counters in one pass.

REFRESH_LAG = timedelta(seconds=60)  # look again at writes stamped this long before the last refresh (in flight then)
STATE_FIELDS = {"student_id": 1, "term": 1, "year": 1, "status": 1, "deleted_at": 1, "files.uploaded_at": 1}


def _day(moment: datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(TAIPEI).date().isoformat()


def _counters(school: str, students: list[str] | None) -> dict[str, dict]:
    """Every Progress document of ``students`` (None: of every student) recomputed from their items:
    <school>:<student>:<period> → fields."""
    counters: dict[str, dict] = {}

    def of(student_id: str, period: str) -> dict:
        return counters.setdefault(f"{school}:{student_id}:{period}", {
            "school": school, "student_id": student_id, "period": period, "outcomes": 0, "certified": 0,
            "performances": 0, "outcome_days": {}, "performance_days": {}})

    def add_days(counter: dict, field: str, files: list[dict]) -> None:
        for f in files:
            day = _day(f["uploaded_at"])
            counter[field][day] = counter[field].get(day, 0) + 1

    chosen = None if students is None else set(students)
    for o in _of_students(Outcome._get_collection(), school, students, STATE_FIELDS):
        if chosen is not None and o["student_id"] not in chosen:
            continue
        counter = of(o["student_id"], _term_code(o["term"]))
        if o.get("deleted_at") is None and o.get("files"):
            counter["outcomes"] += 1
            counter["certified"] += o.get("status") == "certified"
            add_days(counter, "outcome_days", o["files"])
    for p in _of_students(Performance._get_collection(), school, students, STATE_FIELDS):
        if chosen is not None and p["student_id"] not in chosen:
            continue
        periods = [p["year"]] + ([_term_code(p["term"])] if p.get("term") else [])
        for period in periods:
            counter = of(p["student_id"], period)
            if p.get("deleted_at") is None:
                counter["performances"] += 1
                add_days(counter, "performance_days", p.get("files") or [])
    return counters


def _of_students(collection, school: str, students: list[str] | None, fields: dict) -> Iterator[dict]:
    """The school's documents of ``students`` (None: all), through the (school, student_id, …) index ten students
    at a time, or for very many students in one pass over the school's documents. (Measured on SecantusDB: 400
    students' items in tens take 0.4 s, in fifties 0.6 s, one pass over 20,000 items 1.1 s.)"""
    if students is None or len(students) > 500:
        yield from collection.find({"school": school}, fields)
        return
    for at in range(0, len(students), 10):
        yield from collection.find({"school": school, "student_id": {"$in": students[at:at + 10]}}, fields)


def refresh(school: str) -> int:
    """Bring the school's counters up to date with its items; returns how many students were recounted."""
    started = now()
    mark = ProgressMark._get_collection().find_one({"_id": school})
    collection = Progress._get_collection()
    if mark is None:  # the school's first statistics: count everyone in one pass
        counters = _counters(school, None)
        _insert(collection, counters)
        ProgressMark._get_collection().update_one({"_id": school}, {"$max": {"refreshed_to": started}}, upsert=True)
        return len({c["student_id"] for c in counters.values()})
    changed = {"school": school, "updated_at": {"$gt": mark["refreshed_to"] - REFRESH_LAG}}
    students = sorted({d["student_id"] for model in (Outcome, Performance)
                       for d in model._get_collection().find(changed, {"student_id": 1})})
    if students:
        counters = _counters(school, students)
        recounted = set(students)
        # periods a student no longer has anything in (their last item deleted) count zero, not the old count
        stale = [d["_id"] for d in _of_students(collection, school, students, {"_id": 1, "student_id": 1})
                 if d["student_id"] in recounted and d["_id"] not in counters]
        if stale:
            collection.update_many({"_id": {"$in": stale}}, {"$set": {
                "outcomes": 0, "certified": 0, "performances": 0, "outcome_days": {}, "performance_days": {}}})
        if counters:
            collection.bulk_write([UpdateOne({"_id": key}, {"$set": values}, upsert=True)
                                   for key, values in counters.items()], ordered=False)
    ProgressMark._get_collection().update_one({"_id": school}, {"$max": {"refreshed_to": started}}, upsert=True)
    return len(students)


def _insert(collection, counters: dict[str, dict]) -> None:
    """The first counters of a school, inserted (far cheaper than upserts); those a concurrent first refresh
    inserted meanwhile are written over."""
    try:
        if counters:
            collection.insert_many([{"_id": key, **values} for key, values in counters.items()], ordered=False)
    except BulkWriteError as exc:
        taken = [e["op"]["_id"] for e in exc.details.get("writeErrors", []) if e.get("code") == 11000]
        if len(taken) != len(exc.details.get("writeErrors", [])):
            raise
        collection.bulk_write([UpdateOne({"_id": key}, {"$set": counters[key]}) for key in taken], ordered=False)


def row(students: int, uploaded: int, outcomes: int, certified: int, performances: int, counselling: int) -> dict:
    return {"students": students, "students_uploaded": uploaded, "students_not_uploaded": students - uploaded,
            "upload_rate": round(uploaded / students, 4) if students else 0.0, "outcomes_uploaded": outcomes,
            "outcomes_per_student": round(outcomes / students, 2) if students else 0.0,
            "outcomes_certified": certified, "performances_uploaded": performances, "counselling_records": counselling}


def _sum_rows(rows: list[dict]) -> dict:
    total = {key: sum(r[key] for r in rows) for key in ("students", "students_uploaded", "outcomes_uploaded",
                                                          "outcomes_certified", "performances_uploaded",
                                                          "counselling_records")}
    return row(total["students"], total["students_uploaded"], total["outcomes_uploaded"], total["outcomes_certified"],
               total["performances_uploaded"], total["counselling_records"])


def school_numbers(school: str, scope: Scope, *, detail: bool = True) -> dict:
    """The school's total row, and (``detail``) a row per class and the files uploaded per day."""
    refresh(school)
    roll = {d["_id"]: (d.get("class_name") or "", d.get("grade"))
            for d in Directory._get_collection().find({"school": school, "roles": "student", "active": True},
                                                      {"class_name": 1, "grade": 1})}
    terms = [scope.term] if scope.term else [f"{scope.year}01", f"{scope.year}02"]  # the counters' periods
    performance_period = scope.term or scope.year
    # per student: [outcomes, certified, performances, counselling]
    numbers: dict[str, list[int]] = {}
    outcome_days: dict[str, int] = {}
    performance_days: dict[str, int] = {}
    for counter in Progress._get_collection().find({"school": school, "period": {"$in": sorted({*terms, performance_period})}}):
        mine = numbers.setdefault(counter["student_id"], [0, 0, 0, 0])
        if counter["period"] in terms:
            mine[0] += counter.get("outcomes", 0)
            mine[1] += counter.get("certified", 0)
            for day, n in (counter.get("outcome_days") or {}).items():
                outcome_days[day] = outcome_days.get(day, 0) + n
        if counter["period"] == performance_period:
            mine[2] += counter.get("performances", 0)
            for day, n in (counter.get("performance_days") or {}).items():
                performance_days[day] = performance_days.get(day, 0) + n
    counselling = CounsellingEntry._get_collection().aggregate([
        {"$match": {"school": school, "term": {"$in": scope.terms}}}, {"$match": {"removed": {"$ne": True}}},
        {"$group": {"_id": "$student_id", "n": {"$sum": 1}}}])
    for entry in counselling:
        numbers.setdefault(entry["_id"], [0, 0, 0, 0])[3] += entry["n"]
    classes: dict[str, list[str]] = {}
    for student_id, (class_name, _) in roll.items():
        classes.setdefault(class_name, []).append(student_id)
    rows = []
    for class_name, members in sorted(classes.items()):
        grades = [roll[m][1] for m in members if roll[m][1] is not None]
        grade = max(set(grades), key=grades.count) if grades else None  # a class's grade: most of its students'
        counts = [numbers.get(m, [0, 0, 0, 0]) for m in members]
        rows.append({"class_name": class_name, "grade": grade, **row(
            len(members), sum(1 for c in counts if c[0]), *(sum(c[i] for c in counts) for i in range(4)))})
    result = {"total": _sum_rows(rows) if rows else row(0, 0, 0, 0, 0, 0)}
    if detail:
        result["classes"] = rows
        result["per_day"] = [{"date": day, "outcome_files": outcome_days.get(day, 0),
                              "performance_files": performance_days.get(day, 0)}
                             for day in sorted(set(outcome_days) | set(performance_days))]
    return result


def school_statistics(principal: Principal, school: str, scope: Scope) -> dict:
    known = _school_for(principal, school)
    return {"school": school, "name": known.get("name") or "", "term": scope.term, "year": scope.year,
            **school_numbers(school, scope)}


def city_statistics(principal: Principal, city: str, scope: Scope) -> dict:
    _city_for(principal, city)
    schools = [{"school": s["_id"], "name": s.get("name") or "", **school_numbers(s["_id"], scope, detail=False)["total"]}
               for s in School._get_collection().find({"city": city, "active": True}).sort("_id", 1)]
    return {"city": city, "term": scope.term, "year": scope.year, "schools": schools,
            "total": _sum_rows(schools) if schools else row(0, 0, 0, 0, 0, 0)}


# ---- downloads -----------------------------------------------------------------------------------------------

def table(statistics: dict) -> tuple[list[str], list[list]]:
    """The statistics as a sheet: a row per class (a school) or per school (a city), then the total."""
    headers = [f"{zh} {en}" for _, zh, en in COLUMNS]
    values = [key for key, _, _ in COLUMNS]
    if "city" in statistics:
        head = ["學校代碼 school code", "學校 school"]
        rows = [[s["school"], s["name"], *(s[k] for k in values)] for s in statistics["schools"]]
        rows.append(["", "全市合計 city total", *(statistics["total"][k] for k in values)])
    else:
        head = ["班級 class", "年級 grade"]
        rows = [[c["class_name"], c["grade"] if c["grade"] is not None else "", *(c[k] for k in values)]
                for c in statistics["classes"]]
        rows.append(["全校合計 school total", "", *(statistics["total"][k] for k in values)])
    return head + headers, rows


def csv_bytes(statistics: dict) -> bytes:
    """UTF-8 with a byte order mark, so that Excel opens the zh-TW headers right."""
    headers, rows = table(statistics)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return "\ufeff".encode() + buffer.getvalue().encode("utf-8")


def xlsx_bytes(statistics: dict, title: str) -> bytes:
    headers, rows = table(statistics)
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31])
    sheet.append(headers)
    for values in rows:
        sheet.append(values)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _download(statistics: dict, name: str, kind: str) -> Response:
    if kind not in ("csv", "xlsx"):
        raise DomainError("route_not_found", "statistics come as .csv or .xlsx")
    if kind == "csv":
        body, media_type = csv_bytes(statistics), "text/csv; charset=utf-8"
    else:
        body, media_type = xlsx_bytes(statistics, name), XLSX
    return Response(body, content_type=media_type, headers={
        "Content-Disposition": f"attachment; filename=\"{name}.{kind}\"", "Cache-Control": "private, no-store"})


# ---- routes --------------------------------------------------------------------------------------------------

class RowOut(BaseModel):
    students: int
    students_uploaded: int
    students_not_uploaded: int
    upload_rate: float = Field(description="students_uploaded / students, 0..1")
    outcomes_uploaded: int = Field(description="live course outcomes with at least one file")
    outcomes_per_student: float
    outcomes_certified: int
    performances_uploaded: int
    counselling_records: int


class ClassRowOut(RowOut):
    class_name: str
    grade: int | None


class DayOut(BaseModel):
    date: str = Field(description="Taiwan date, YYYY-MM-DD")
    outcome_files: int
    performance_files: int


class SchoolStatisticsOut(BaseModel):
    school: str
    name: str
    term: str | None
    year: str
    total: RowOut
    classes: list[ClassRowOut]
    per_day: list[DayOut] = Field(description="files uploaded per day, for the scope's items")


class SchoolRowOut(RowOut):
    school: str
    name: str


class CityStatisticsOut(BaseModel):
    city: str
    term: str | None
    year: str
    schools: list[SchoolRowOut]
    total: RowOut


def install_routes(api) -> None:
    """Statistics routes on intake's Api (so they are in its OpenAPI document)."""

    @api.route("GET", f"{PREFIX}/schools/<code>/statistics", summary="Progress statistics of a school per term or "
               "year: total, per class, files per day (school admin, registrar, curriculum; the city admin)",
               query=StatisticsQuery, response=SchoolStatisticsOut, tags=["intake-statistics"])
    @require_auth()
    def school_statistics_json(code):
        scope = read_query(StatisticsQuery).scope()
        return json_response(school_statistics(current_principal(), code, scope))

    @api.route("GET", f"{PREFIX}/schools/<code>/statistics.<kind>", summary="The school's statistics "
               "as CSV (UTF-8 with BOM) or XLSX: a row per class and the school total", query=StatisticsQuery,
               tags=["intake-statistics"])
    @require_auth()
    def school_statistics_file(code, kind):
        scope = read_query(StatisticsQuery).scope()
        statistics = school_statistics(current_principal(), code, scope)
        return _download(statistics, f"statistics-{code}-{scope.label()}", kind)

    @api.route("GET", f"{PREFIX}/cities/<city>/statistics", summary="Progress statistics of a city's schools side by "
               "side and the city total (city admin)", query=StatisticsQuery, response=CityStatisticsOut,
               tags=["intake-statistics"])
    @require_auth()
    def city_statistics_json(city):
        scope = read_query(StatisticsQuery).scope()
        return json_response(city_statistics(current_principal(), city, scope))

    @api.route("GET", f"{PREFIX}/cities/<city>/statistics.<kind>", summary="The city's statistics as "
               "CSV (UTF-8 with BOM) or XLSX: a row per school and the city total", query=StatisticsQuery,
               tags=["intake-statistics"])
    @require_auth()
    def city_statistics_file(city, kind):
        scope = read_query(StatisticsQuery).scope()
        statistics = city_statistics(current_principal(), city, scope)
        return _download(statistics, f"statistics-{city}-{scope.label()}", kind)
