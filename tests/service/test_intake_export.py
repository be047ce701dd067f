"""The portfolio export: a PDF whose zh-TW text and sha256s read back out of it (the CJK font embedded), a JSON
document listing every file with the sha256 of the bytes uploaded, a class as a streamed zip of both per student,
and who may export whom (another student's export is 404)."""
from __future__ import annotations

import io
import json
import zipfile

import pytest
from pypdf import PdfReader

from services.intake.models import Directory
from shared.events import SchoolCreated
from tests.service.test_intake_support import (A, TERM, event, pdf, png, problem_of, sha,
                                               world)  # noqa: F401 (fixture)

YEAR = TERM[:3]


def url(student: str, kind: str) -> str:
    return f"/api/v1/intake/students/{student}/portfolio.{kind}"


def pdf_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    # pypdf reads the 2-byte codes of this font's embedded CMap with a NUL before each character
    return "".join(page.extract_text() for page in reader.pages).replace("\x00", "")


@pytest.fixture
def portfolio(world):
    """s1: a certified outcome with two files, a returned-then-draft outcome of the second term, a performance with a
    file and a link, and a selection; s2 (same class) an outcome with a file."""
    world.deliver(event(SchoolCreated(code=A, name="足跡示範高級中學", city="TPE"), school=A, producer="identity"))
    world.set_policy(outcome_cap_per_term=9)
    certified = world.outcome("s1", "SEC-A1", brief="函數圖形的觀察與推論")
    uploads = [world.upload(certified, pdf(b"essay"), "數學小論文.pdf").get_json(),
               world.upload(certified, png(), "圖表.png").get_json()]
    assert world.client.post(f"/api/v1/intake/outcomes/{certified['id']}/submit", headers=world.h("s1")).status_code == 200
    world.certify(certified, 1)
    draft = world.outcome("s1", "SEC-A3", brief="下學期的草稿")
    performance = world.performance("s1", name="全國高中生科展", organiser="國立臺灣科學教育館", result="佳作",
                                    links=["https://example.edu.tw/fair"])
    uploads.append(world.upload(performance, pdf(b"award"), "獎狀.pdf", kind="performances").get_json())
    selected = world.client.put(f"/api/v1/intake/selections/{YEAR}", headers=world.h("s1"),
                                json={"outcome_ids": [certified["id"]], "performance_ids": [performance["id"]]})
    assert selected.status_code == 200, selected.get_data(as_text=True)
    other = world.outcome("s2", "SEC-A1", brief="同學的成果")
    world.upload(other, pdf(b"classmate"), "同學.pdf", user="s2")
    return {"certified": certified, "draft": draft, "performance": performance, "uploads": uploads}


def test_the_json_lists_every_file_with_the_sha256_of_what_was_uploaded(world, portfolio):
    response = world.get(url("s1", "json"), "s1")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type == "application/json; charset=utf-8"
    document = json.loads(response.data)
    assert document["format"] == "footprint.portfolio.v1"
    assert document["school"] == {"code": A, "name": "足跡示範高級中學"}
    assert {k: document["student"][k] for k in ("id", "student_no", "class_name", "grade")} == \
        {"id": "s1", "student_no": "Ns1", "class_name": "101", "grade": 10}
    outcomes = {o["id"]: o for o in document["outcomes"]}
    assert set(outcomes) == {portfolio["certified"]["id"], portfolio["draft"]["id"]}
    certified = outcomes[portfolio["certified"]["id"]]
    assert (certified["status"], certified["submission"], certified["brief"]) == ("certified", 1, "函數圖形的觀察與推論")
    assert certified["certified_at"] and certified["course_code"] and certified["subject_name"] == "數學"
    assert outcomes[portfolio["draft"]["id"]]["status"] == "draft"
    [performance] = document["performances"]
    assert (performance["name"], performance["links"]) == ("全國高中生科展", ["https://example.edu.tw/fair"])
    listed = {f["file_id"]: f["sha256"] for item in document["outcomes"] + document["performances"] for f in item["files"]}
    assert listed == {u["file_id"]: u["sha256"] for u in portfolio["uploads"]}
    assert sorted(listed.values()) == sorted([sha(pdf(b"essay")), sha(png()), sha(pdf(b"award"))])
    assert document["selections"] == [{"year": YEAR, "revision": 1, "locked": False,
                                       "outcome_ids": [portfolio["certified"]["id"]],
                                       "performance_ids": [portfolio["performance"]["id"]]}]


def test_the_pdf_carries_the_zh_tw_text_and_the_sha256s_in_an_embedded_cjk_font(world, portfolio):
    response = world.get(url("s1", "pdf"), "s1")
    assert response.status_code == 200 and response.content_type == "application/pdf"
    assert response.data.startswith(b"%PDF-")
    text = pdf_text(response.data)
    for expected in ("學生學習歷程檔案", "足跡示範高級中學", "課程學習成果", "函數圖形的觀察與推論", "已認證", "數學小論文.pdf",
                     "多元表現", "全國高中生科展", "國立臺灣科學教育館", "佳作", "勾選"):
        assert expected in text, expected
    for upload in portfolio["uploads"]:
        assert upload["sha256"] in text
    assert "同學的成果" not in text  # a classmate's work is not in it
    fonts = [font.get_object() for page in PdfReader(io.BytesIO(response.data)).pages
             for font in page["/Resources"]["/Font"].values()]
    assert fonts and all(f["/BaseFont"].endswith("NotoSansCJKTC") for f in fonts)
    descriptor = fonts[0]["/DescendantFonts"][0].get_object()["/FontDescriptor"].get_object()
    embedded = descriptor["/FontFile3"].get_object().get_data()
    assert 1000 < len(embedded) < 500_000  # a subset of the 19 MB collection: just the glyphs used


def test_staff_export_a_class_as_a_streamed_zip(world, portfolio):
    response = world.client.get(f"/api/v1/intake/schools/{A}/classes/101/portfolios.zip", headers=world.h("t_home"))
    assert response.status_code == 200 and response.content_type == "application/zip"
    assert response.is_streamed
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == ["Ns1-s1/portfolio.json", "Ns1-s1/portfolio.pdf",
                                          "Ns2-s2/portfolio.json", "Ns2-s2/portfolio.pdf"]
    mine = json.loads(archive.read("Ns1-s1/portfolio.json"))
    assert sorted(f["sha256"] for item in mine["outcomes"] + mine["performances"] for f in item["files"]) == \
        sorted(u["sha256"] for u in portfolio["uploads"])
    assert "同學的成果" in pdf_text(archive.read("Ns2-s2/portfolio.pdf"))
    for user in ("admin", "registrar"):
        assert world.client.get(f"/api/v1/intake/schools/{A}/classes/101/portfolios.zip",
                                headers=world.h(user)).status_code == 200


def test_who_may_export_whom(world, portfolio):
    # another student's export does not exist for a student; another school's student for anyone
    for kind in ("pdf", "json"):
        problem_of(world.get(url("s2", kind), "s1"), 404, "not_found")
        problem_of(world.get(url("s1", kind), "b1"), 404, "not_found")
        problem_of(world.get(url("s1", kind), "b_admin"), 404, "not_found")
        problem_of(world.get(url("nobody", kind), "admin"), 404, "not_found")
    problem_of(world.get(url("s1", "docx"), "s1"), 404, "route_not_found")
    # the homeroom teacher of the class, the registrar and the school admin may; other teachers may not
    for user in ("t_home", "registrar", "admin"):
        assert world.get(url("s1", "json"), user).status_code == 200, user
    for user in ("t_home2", "t_math", "curriculum"):
        problem_of(world.get(url("s1", "json"), user), 403, "forbidden")
    zip_url = f"/api/v1/intake/schools/{A}/classes/101/portfolios.zip"
    for user in ("t_home2", "t_math", "s1"):
        problem_of(world.client.get(zip_url, headers=world.h(user)), 403, "forbidden")
    problem_of(world.client.get(zip_url, headers=world.h("b_admin")), 404, "not_found")
    problem_of(world.client.get(f"/api/v1/intake/schools/{A}/classes/999/portfolios.zip", headers=world.h("admin")),
               404, "not_found")
    city = world.tokens.headers("city", None, ("city_admin",), city="TPE")
    problem_of(world.client.get(url("s1", "json"), headers=city), 404, "not_found")


def test_a_student_not_yet_in_the_directory_still_exports_their_own(world):
    Directory.objects(id="s1").delete()
    item = world.outcome("s1", "SEC-A1", brief="剛上傳")
    world.upload(item, pdf(b"fresh"), "新.pdf")
    document = world.get(url("s1", "json"), "s1").get_json()
    assert document["student"]["id"] == "s1" and document["outcomes"][0]["files"][0]["sha256"] == sha(pdf(b"fresh"))
