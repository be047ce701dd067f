"""Bulk imports: row-level errors, nothing written for rejected rows, idempotent re-import, Big5 and XLSX, jobs."""
from __future__ import annotations

import io
import time

import pytest
from openpyxl import Workbook

from tests.service.test_records_support import (COURSE, COURSE2, TERM, XLSX, add_section, base, client, enrol,  # noqa: F401
                                                h, outbox_events, problem_of, records, setup_term, uid)

C3, C4 = "1" * 23, "2" * 23


def post_import(client, kind, data: bytes, who="admin", query="?wait=true", content_type="text/csv", school="999001"):
    return client.post(f"{base(school)}/imports/{kind}{query}", data=data, content_type=content_type,
                       headers=h(who, school))


def report_of(response) -> dict:
    assert response.status_code == 200, response.get_data(as_text=True)
    job = response.get_json()
    assert job["status"] == "done" and job["rows_done"] == job["rows_total"], job
    return job["report"]


def by_row(report) -> dict:
    return {e["row"]: {(x["field"], x["code"]) for x in e["errors"]} for e in report["errors"]}


def xlsx(rows) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def snapshot():
    from services.records.models import Enrolment, Section

    return {doc["_id"]: (doc["version"], len(doc["outbox"])) for model in (Section, Enrolment)
            for doc in model._get_collection().find()}


SECTIONS = ("\ufeff學期,課程代碼,科目名稱,學分數,課程類別,開課班級,授課教師\n"
            f"11201,{COURSE},國語文,4,部定必修,101,teacher01\n"                      # 2
            f"11201,{COURSE2},英語文,2,部定必修,102,teacher02;teacher01\n"            # 3
            f"11201,{COURSE},國語文,4,部定必修,102,teacher02\n"                       # 4
            "11201,1234,數學,4,部定必修,101,teacher01\n"                              # 5 course code
            f"11201,{C3},數學,25,部定必修,101,\n"                                      # 6 credits
            f"11201,{C3},數學,4,部定必修,101,ghost\n"                                  # 7 teacher
            f"11201,{C3},體育,2,體育課,101,\n"                                         # 8 category
            f"11202,{C3},數學,4,部定必修,101,\n"                                       # 9 term not set up
            f"11201,{COURSE},國語文,4,部定必修,101,teacher01\n"                       # 10 duplicate of 2
            f"1121,{C3},數學,4,部定必修,101,\n"                                        # 11 bad term
            ",,,,,,\n"                                                                 # 12 blank: skipped
            f"11201,{C4},多元選修：桌遊,1,多元選修,跨班選修A,\n")                      # 13


def test_sections_import_reports_rows_and_writes_only_good_rows(client, records):
    from services.records.models import Section

    setup_term(client)
    report = report_of(post_import(client, "sections", SECTIONS.encode("utf-8"), who="curriculum"))
    assert (report["rows"], report["created"], report["rejected"]) == (11, 4, 7)
    assert by_row(report) == {5: {("course_code", "invalid_course_code")}, 6: {("credits", "invalid_number")},
                              7: {("teachers", "unknown_teacher")}, 8: {("category", "invalid_category")},
                              9: {("term", "unknown_term")}, 10: {("course_code", "duplicate_in_file")},
                              11: {("term", "invalid_term")}}
    sections = {(s.course_code, s.section_name): s for s in Section.objects(school="999001")}
    assert set(sections) == {(COURSE, "101"), (COURSE2, "102"), (COURSE, "102"), (C4, "跨班選修A")}
    assert sections[(COURSE2, "102")].teacher_ids == [uid("teacher02"), uid("teacher01")]
    assert [e["type"] for e in outbox_events(Section)] == ["records.section.created.v1"] * 4
    assert Section.objects(school="999002").count() == 0

    before = snapshot()
    again = report_of(post_import(client, "sections", SECTIONS.encode("utf-8"), who="curriculum"))
    assert (again["created"], again["updated"], again["unchanged"], again["rejected"]) == (0, 0, 4, 7)
    assert snapshot() == before  # nothing changed, no new events

    changed = SECTIONS.replace(f"{COURSE},國語文,4,部定必修,101", f"{COURSE},國語文,3,部定必修,101")
    third = report_of(post_import(client, "sections", changed.encode("utf-8"), who="curriculum"))
    assert (third["created"], third["updated"], third["unchanged"]) == (0, 1, 3)
    assert sections[(COURSE, "101")].reload().credits == 3
    assert outbox_events(Section, _id=sections[(COURSE, "101")].id)[-1]["type"] == "records.section.updated.v1"


def _two_sections(client):
    setup_term(client)
    return add_section(client)["id"], add_section(client, course_code=COURSE2, section_name="102",
                                                 teachers=("teacher02",), subject="英語文", credits=2)["id"]


def test_big5_enrolments_as_excel_saves_them(client, records):
    from services.records.models import Enrolment

    chinese, english = _two_sections(client)
    add_section(client, course_code=COURSE2, section_name="跨班", teachers=())     # COURSE2 now has two sections
    rows = ("學期,學號,姓名,課程代碼,開課班級\n"
            f"11201,1120001,林同學,{COURSE},101\n"        # 2
            f"11201,1100003,陳同學,{COURSE},\n"           # 3 the only section of COURSE
            f"11201,1110002,王同學,{COURSE2},102\n"       # 4
            f"11201,1130009,國中生,{COURSE},101\n"        # 5 grade 9
            f"11201,9999999,無此人,{COURSE},101\n"        # 6
            f"11201,1110002,王同學,{COURSE2},\n"          # 7 ambiguous: two sections of COURSE2
            f"11201,1120001,林同學,{COURSE},999\n")       # 8 no such section
    data = rows.encode("cp950")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    report = report_of(post_import(client, "enrolments", data, who="registrar"))
    assert (report["created"], report["rejected"]) == (3, 4)
    assert by_row(report) == {5: {("student_no", "not_enrollable")}, 6: {("student_no", "unknown_student")},
                              7: {("section_name", "ambiguous_section")}, 8: {("course_code", "unknown_section")}}
    enrolled = {(e.student_no, e.section_id) for e in Enrolment.objects(school="999001")}
    assert enrolled == {("1120001", chinese), ("1100003", chinese), ("1110002", english)}
    assert [e["type"] for e in outbox_events(Enrolment)] == ["records.enrolment.created.v1"] * 3

    before = snapshot()
    again = report_of(post_import(client, "enrolments", data, who="curriculum"))
    assert (again["created"], again["unchanged"], again["rejected"]) == (0, 3, 4)
    assert snapshot() == before


def test_xlsx_grades_with_english_headers(client, records):
    from services.records.models import Enrolment

    chinese, english = _two_sections(client)
    e1 = enrol(client, chinese, "student01")["id"]
    e3 = enrol(client, chinese, "student03")["id"]
    enrol(client, english, "student02")
    data = xlsx([
        ["term", "student_no", "course_code", "section_name", "score", "passed", "credits_earned", "retake", "makeup"],
        [11201, 1120001, COURSE, 101, 91.5, None, None, None, None],    # 2 passed derived from the score
        ["11201", "1100003", COURSE, "101", 45, "否", None, "是", None],  # 3 failed, retake
        ["11201", "1110002", COURSE, "101", 70, None, None, None, None],  # 4 not enrolled in this section
        ["11201", "1120001", int(C3), "101", 70, None, None, None, None],  # 5 a course code typed as a number
        ["11201", "1110002", COURSE2, "102", 120, None, None, None, None],  # 6 score out of range
        ["11201", "1110002", COURSE2, "102", 80, "yes", 9, None, None],     # 7 more credits than the course has
        ["11201", "1110002", COURSE2, "102", 80, "maybe", None, None, None],  # 8
    ])
    report = report_of(post_import(client, "grades", data, content_type=XLSX))
    assert (report["created"], report["rejected"]) == (2, 5), report
    assert by_row(report) == {4: {("student_no", "not_enrolled")}, 5: {("course_code", "invalid_course_code")},
                              6: {("score", "invalid_score")}, 7: {("credits_earned", "too_many_credits")},
                              8: {("passed", "invalid_flag")}}
    one, three = Enrolment.objects(id=e1).first(), Enrolment.objects(id=e3).first()
    assert (one.grade.score, one.grade.passed, one.grade.credits_earned) == (91.5, True, 4)
    assert (three.grade.score, three.grade.passed, three.grade.credits_earned, three.grade.retake) == (45, False, 0, True)
    assert [e["type"] for e in outbox_events(Enrolment, _id=e1)][-1] == "records.grade.recorded.v1"

    before = snapshot()
    again = report_of(post_import(client, "grades", data, who="registrar", content_type=XLSX))
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2)
    assert snapshot() == before


def test_cadres_clubs_and_attendance_imports_are_idempotent(client, records):
    from services.records.models import Attendance, Cadre, ClubMembership

    cadres = ("學期,學號,幹部層級,單位,職稱\n11201,1120001,班級,101,班長\n11201,1120001,校級,學生會,會長\n"
              "11201,1110002,國家級,x,y\n11201,5555555,班級,101,副班長\n").encode("utf-8-sig")
    report = report_of(post_import(client, "cadres", cadres, who="affairs"))
    assert (report["created"], report["rejected"]) == (2, 2)
    assert by_row(report) == {4: {("level", "invalid_level")}, 5: {("student_no", "unknown_student")}}
    assert report_of(post_import(client, "cadres", cadres, who="affairs"))["unchanged"] == 2
    assert Cadre.objects(school="999001").count() == 2

    clubs = "學期,學號,社團名稱,職務\n11201,1120001,熱舞社,社長\n11201,1110002,熱舞社,\n".encode("cp950")
    assert report_of(post_import(client, "clubs", clubs, who="affairs"))["created"] == 2
    changed = "學期,學號,社團名稱,職務\n11201,1120001,熱舞社,副社長\n11201,1110002,熱舞社,\n".encode("cp950")
    second = report_of(post_import(client, "clubs", changed, who="admin"))
    assert (second["updated"], second["unchanged"]) == (1, 1)
    assert sorted(c.role for c in ClubMembership.objects(school="999001")) == ["副社長", "社員"]

    attendance = xlsx([["學號", "事假", "病假", "曠課", "late"], ["1120001", 3, None, 1, 7], ["1110002", "x", 0, 0, 0]])
    third = report_of(post_import(client, "attendance", attendance, who="affairs", content_type=XLSX,
                                  query=f"?wait=true&term={TERM}"))
    assert (third["created"], third["rejected"]) == (1, 1) and by_row(third) == {3: {("事假", "invalid_number")}}
    (summary,) = Attendance.objects(school="999001")
    assert dict(summary.counts) == {"事假": 3, "病假": 0, "公假": 0, "喪假": 0, "曠課": 1, "遲到": 7}
    assert summary.term == TERM
    assert report_of(post_import(client, "attendance", attendance, who="affairs", content_type=XLSX,
                                 query=f"?wait=true&term={TERM}"))["unchanged"] == 1


def test_a_background_job_reports_progress_until_done(client, records):
    from services.records.models import Cadre

    rows = "".join(f"11201,{no},班級,101,幹部{n}\n" for n in range(150) for no in ("1120001", "1110002", "1100003"))
    response = client.post(f"{base()}/imports/cadres", data=("學期,學號,幹部層級,單位,職稱\n" + rows).encode(),
                           content_type="text/csv", headers={**h("affairs"), "X-File-Name": "%E5%B9%B9%E9%83%A8.csv"})
    assert response.status_code == 202 and response.get_json()["file_name"] == "幹部.csv"
    job = response.get_json()
    assert job["status"] in ("queued", "running", "done") and job["kind"] == "cadres"
    assert response.headers["Location"] == f"{base()}/imports/jobs/{job['id']}"
    url = f"{base()}/imports/jobs/{job['id']}"
    seen = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        current = client.get(url, headers=h("affairs")).get_json()
        seen.append((current["status"], current["rows_done"]))
        if current["status"] in ("done", "failed"):
            break
        time.sleep(0.02)
    assert current["status"] == "done", current
    assert current["rows_total"] == current["rows_done"] == 450 and current["report"]["created"] == 450
    assert current["finished_at"] is not None and Cadre.objects(school="999001").count() == 450
    assert all(done <= 450 for _, done in seen)
    # the job is sealed like everything else
    problem_of(client.get(url, headers=h("affairs", "999002")), 404, "not_found")
    problem_of(client.get(f"{base('999002')}/imports/jobs/{job['id']}", headers=h("affairs", "999002")), 404)
    problem_of(client.get(url, headers=h("student01")), 403, "forbidden")
    assert client.get(url, headers=h("cityadmin")).status_code == 200


def test_progress_is_reported_batch_by_batch(client, records, monkeypatch):
    from services.records import imports

    monkeypatch.setattr(imports, "PROGRESS_EVERY", 2)
    calls = []
    from tests.service.test_records_support import TOKENS

    admin = TOKENS.verifier.verify(h("affairs")["Authorization"].split()[1])
    data = "學期,學號,社團名稱\n" + "".join(f"11201,1120001,社{n}\n" for n in range(5))
    report = imports.import_rows("999001", admin, "clubs", io.BytesIO(data.encode()),
                                 progress=lambda done, total: calls.append((done, total)))
    assert report["created"] == 5 and calls == [(0, 5), (2, 5), (4, 5), (5, 5)]


def test_a_failing_job_is_marked_failed(client, records, monkeypatch):
    from services.records import imports
    from services.records.models import ImportJob

    monkeypatch.setattr(imports, "MAX_ROWS", 2)
    data = "學期,學號,社團名稱\n11201,1120001,a\n11201,1120001,b\n11201,1120001,c\n".encode()
    problem_of(post_import(client, "clubs", data, who="affairs"), 413, "payload_too_large")
    (job,) = ImportJob.objects(school="999001")
    assert job.status == "failed" and job.error["code"] == "payload_too_large"
    queued = post_import(client, "clubs", data, who="affairs", query="").get_json()
    records.state["imports"].join()
    failed = client.get(f"{base()}/imports/jobs/{queued['id']}", headers=h("affairs")).get_json()
    assert failed["status"] == "failed" and failed["error"]["code"] == "payload_too_large" and failed["report"] is None


def test_dry_run_reports_without_writing(client, records):
    from services.records.models import Section

    setup_term(client)
    report = report_of(post_import(client, "sections", SECTIONS.encode(), who="curriculum", query="?wait=true&dry_run=1"))
    assert report["dry_run"] is True and report["created"] == 4 and report["rejected"] == 7
    assert Section.objects.count() == 0


def test_unreadable_files_and_wrong_callers_write_nothing(client, records):
    from services.records.models import ImportJob

    setup_term(client)
    for data in (b"", b"\x00\x01\x02binary", "姓名\n王\n".encode(), b"PK\x03\x04broken zip", "\n\n".encode()):
        problem_of(post_import(client, "sections", data, who="curriculum"), 422, "invalid_import_file")
    missing = problem_of(post_import(client, "enrolments", "學號,課程代碼\n1120001,x\n".encode(), who="curriculum"),
                         422, "invalid_import_file")
    assert {e["field"] for e in missing["errors"]} == {"term"}
    problem_of(post_import(client, "sections", SECTIONS.encode(), who="teacher01"), 403, "forbidden")
    problem_of(post_import(client, "grades", SECTIONS.encode(), who="curriculum"), 403, "forbidden")
    problem_of(post_import(client, "cadres", SECTIONS.encode(), who="registrar"), 403, "forbidden")
    problem_of(post_import(client, "sections", SECTIONS.encode(), who="cityadmin"), 403, "forbidden")
    problem_of(client.post(f"{base('999001')}/imports/sections?wait=true", data=SECTIONS.encode(),
                           content_type="text/csv", headers=h("curriculum", "999002")), 404, "not_found")
    problem_of(post_import(client, "parents", SECTIONS.encode()), 404, "not_found")
    problem_of(post_import(client, "sections", SECTIONS.encode(), query="?wait=true&term=1121"), 422, "invalid_term")
    problem_of(post_import(client, "sections", SECTIONS.encode(), query="?wait=true&bogus=1"), 422, "validation_failed")
    # too large: announced, or (chunked, no length) found while streaming
    problem_of(client.post(f"{base()}/imports/sections", data=b"x", content_type="text/csv", headers=h("admin"),
                           environ_overrides={"CONTENT_LENGTH": str(21 * 1024 * 1024)}), 413, "payload_too_large")
    big = SECTIONS.encode() + b"11201,x,x,1,\xe5\x85\xb6\xe4\xbb\x96,x,\n" * (20 * 1024 * 1024 // 20)
    problem_of(client.post(f"{base()}/imports/sections?wait=true", data=big, content_type="text/csv", headers=h("admin"),
                           environ_overrides={"CONTENT_LENGTH": "", "wsgi.input_terminated": True}),
               413, "payload_too_large")
    assert ImportJob.objects.count() == 0
