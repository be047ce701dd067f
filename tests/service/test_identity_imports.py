"""Bulk import of students and teachers: row-level errors, nothing written for rejected rows, idempotent."""
from __future__ import annotations

import io

from openpyxl import Workbook

from tests.conftest import bearer, login

HEADER = "學號,姓名,班級,年級,身分證字號,初始密碼\n"
GOOD = ["1130001,陳一,101,10,A123456789,pass-0001", "1130002,陳二,101,10,F131104093,pass-0002",
        "1130003,陳三,102,11,A800000014,pass-0003"]


def post_import(client, token, kind, data: bytes, content_type="text/csv", query=""):
    return client.post(f"/api/v1/schools/999001/imports/{kind}{query}", data=data, content_type=content_type,
                       headers=bearer(token))


def users_snapshot():
    from services.identity.models import User

    return {u.username: (u.version, u.display_name, u.password_hash) for u in User.objects(school="999001")}


def test_csv_import_reports_rows_and_writes_only_good_rows(client):
    admin = login(client, "999001", "admin")
    rows = GOOD + [
        "1130004,壞的檢查碼,101,10,A123456788,pass-0004",
        "1130005,年級錯,101,9,A123456789,pass-0005",
        ",沒學號,101,10,F131104093,pass-0006",
        "1130001,重複,101,10,A123456789,pass-0007",
        "1130008,無密碼,101,10,A123456789,",
    ]
    csv_bytes = (HEADER + "\n".join(rows) + "\n").encode("utf-8-sig")
    report = post_import(client, admin, "students", csv_bytes).get_json()
    assert report["created"] == 3 and report["rejected"] == 5 and report["rows"] == 8
    by_row = {e["row"]: {x["field"] for x in e["errors"]} for e in report["errors"]}
    assert by_row == {5: {"national_id"}, 6: {"grade"}, 7: {"student_no"}, 8: {"student_no"}, 9: {"password"}}
    snapshot = users_snapshot()
    assert {"1130001", "1130002", "1130003"} <= set(snapshot) and "1130004" not in snapshot and "1130008" not in snapshot
    # the imported student signs in with the initial password and must change it
    assert login(client, "999001", "1130001", "pass-0001")["must_change_password"] is True

    again = post_import(client, admin, "students", csv_bytes).get_json()
    assert again["created"] == 0 and again["updated"] == 0 and again["unchanged"] == 3 and again["rejected"] == 5
    assert users_snapshot() == snapshot  # nothing changed: no version bump, same hashes


def test_reimport_with_a_changed_row_updates_it_and_keeps_the_password(client):
    admin = login(client, "999001", "admin")
    post_import(client, admin, "students", (HEADER + "\n".join(GOOD)).encode())
    before = users_snapshot()
    changed = GOOD[:1] + ["1130002,陳二改名,103,10,F131104093,another-pass"] + GOOD[2:]
    report = post_import(client, admin, "students", (HEADER + "\n".join(changed)).encode()).get_json()
    assert (report["updated"], report["unchanged"], report["created"]) == (1, 2, 0)
    after = users_snapshot()
    assert after["1130002"][1] == "陳二改名" and after["1130002"][2] == before["1130002"][2]


def test_big5_csv_as_excel_saves_it(client):
    admin = login(client, "999001", "admin")
    data = (HEADER + "\n".join(GOOD)).encode("cp950")
    report = post_import(client, admin, "students", data).get_json()
    assert report["created"] == 3, report


def test_xlsx_import_and_dry_run(client):
    admin = login(client, "999001", "admin")
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["帳號", "姓名", "角色", "導師班級", "初始密碼"])
    sheet.append(["t100", "張老師", "任課教師、導師", "101", "teach-pass-1"])
    sheet.append(["t101", "李老師", "課程諮詢教師;輔導室", None, "teach-pass-2"])
    sheet.append(["t102", "錯老師", "魔法師", None, "teach-pass-3"])
    sheet.append(["t103", "導師缺班", "導師", None, "teach-pass-4"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    dry = post_import(client, admin, "teachers", buffer.getvalue(), xlsx, "?dry_run=true").get_json()
    assert dry["dry_run"] and dry["created"] == 2 and dry["rejected"] == 2
    assert "t100" not in users_snapshot()
    report = post_import(client, admin, "teachers", buffer.getvalue(), xlsx).get_json()
    assert report["created"] == 2 and {e["row"] for e in report["errors"]} == {4, 5}
    tokens = login(client, "999001", "t100", "teach-pass-1")
    client.post("/api/v1/auth/password", headers=bearer(tokens),
                json={"current_password": "teach-pass-1", "new_password": "teach-pass-new"})
    me = client.get("/api/v1/me", headers=bearer(login(client, "999001", "t100", "teach-pass-new"))).get_json()
    assert me["user"]["roles"] == ["subject_teacher", "homeroom_teacher"] and me["user"]["homeroom_class"] == "101"


def test_unreadable_files_and_wrong_callers(client):
    admin = login(client, "999001", "admin")
    teacher = login(client, "999001", "teacher01")
    for data in (b"", b"\x00\x01\x02binary", "姓名\n王\n".encode(), b"PK\x03\x04broken zip"):
        response = post_import(client, admin, "students", data)
        assert response.status_code == 422 and response.get_json()["code"] == "invalid_import_file", data
    assert post_import(client, teacher, "students", (HEADER + GOOD[0]).encode()).status_code == 403
    other = login(client, "999002", "admin")
    assert client.post("/api/v1/schools/999001/imports/students", data=(HEADER + GOOD[0]).encode(),
                       content_type="text/csv", headers=bearer(other)).status_code == 404
    assert post_import(client, admin, "parents", (HEADER + GOOD[0]).encode()).status_code == 404
    assert "1130001" not in users_snapshot()


def test_import_emits_one_created_event_per_user(client, identity_runtime):
    from services.identity.models import User

    admin = login(client, "999001", "admin")
    post_import(client, admin, "students", (HEADER + "\n".join(GOOD)).encode())
    pending = [item["event"] for u in User._get_collection().find({"school": "999001", "username": {"$in": ["1130001", "1130002", "1130003"]}})
               for item in u["outbox"]]
    assert sorted(e["type"] for e in pending) == ["identity.user.created.v1"] * 3
    assert all("national_id" not in str(e["payload"]) and "A123456789" not in str(e) for e in pending)


def test_graduates_are_imported_without_a_usable_account(client):
    from services.identity.models import User

    admin = login(client, "999001", "admin")
    csv_bytes = (HEADER.replace("初始密碼", "初始密碼,學籍狀態") + "1130009,畢業生,301,12,A123456789,pass-0009,畢業\n"
                 "1130001,陳一,101,10,F131104093,pass-0001,在學\n").encode()
    report = post_import(client, admin, "students", csv_bytes).get_json()
    assert report["created"] == 2, report
    graduate = User.objects(school="999001", username="1130009").first()
    assert graduate.active is False
    assert [i["event"]["type"] for i in User._get_collection().find_one({"_id": graduate.id})["outbox"]] == [
        "identity.user.created.v1", "identity.user.deactivated.v1"]
    assert client.post("/api/v1/auth/login", json={"school": "999001", "username": "1130009",
                                                   "password": "pass-0009"}).status_code == 403
    # an enrolled student whose row later says 畢業 loses the account the way a staff edit would do it
    again = (HEADER.replace("初始密碼", "初始密碼,學籍狀態") + "1130001,陳一,101,10,F131104093,pass-0001,畢業\n").encode()
    assert post_import(client, admin, "students", again).get_json()["updated"] == 1
    assert User.objects(school="999001", username="1130001").first().active is False


def test_cells_longer_than_the_records_allow_reject_only_their_row(client):
    admin = login(client, "999001", "admin")
    rows = [GOOD[0], "1130002," + "名" * 61 + ",101,10,F131104093,pass-0002", "1130003,陳三," + "1" * 21 + ",11,A800000014,pass-0003"]
    report = post_import(client, admin, "students", (HEADER + "\n".join(rows)).encode()).get_json()
    assert report["created"] == 1 and report["rejected"] == 2
    assert {e["row"]: e["errors"][0]["field"] for e in report["errors"]} == {3: "name", 4: "class_name"}
    assert "1130002" not in users_snapshot() and "1130001" in users_snapshot()
