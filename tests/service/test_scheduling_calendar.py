"""The iCalendar feed (RFC 5545): CRLF lines of at most 75 octets (folded without splitting a character), one VEVENT
per window with UID, DTSTAMP, DTSTART/DTEND in UTC and a zh-TW + English SUMMARY."""
from __future__ import annotations

from services.scheduling.calendar import escape, fold
from tests.service.test_scheduling_support import A, B, TERM, problem_of, taipei, world  # noqa: F401 (fixture)


def unfold(data: bytes) -> list[str]:
    return data.replace(b"\r\n ", b"").decode("utf-8").split("\r\n")


def test_the_feed_is_valid_icalendar(world):
    world.set_window("selection", taipei(2024, 2, 23, 8), taipei(2024, 2, 29, 17))
    response = world.get(f"/schools/{A}/terms/{TERM}/calendar.ics", "s1")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/calendar" and response.mimetype_params.get("charset") == "utf-8"
    data = response.get_data()
    assert data.endswith(b"END:VCALENDAR\r\n")
    physical = data.split(b"\r\n")[:-1]
    assert b"\n" not in b"".join(physical) and b"\r" not in b"".join(physical)
    for line in physical:
        assert len(line) <= 75, line
        line.decode("utf-8")  # every folded piece is whole UTF-8: no character was split
    assert any(line.startswith(b" ") for line in physical), "the long SUMMARY/DESCRIPTION lines are folded"
    lines = unfold(data)[:-1]
    assert lines[:2] == ["BEGIN:VCALENDAR", "VERSION:2.0"] and any(l.startswith("PRODID:") for l in lines)
    events, current = [], None
    for line in lines:
        if line == "BEGIN:VEVENT":
            current = {}
        elif line == "END:VEVENT":
            events.append(current)
            current = None
        elif current is not None:
            name, _, value = line.partition(":")
            current[name] = value
    assert len(events) == 8
    for event in events:
        assert {"UID", "DTSTAMP", "DTSTART", "DTEND", "SUMMARY"} <= set(event)
        for key in ("DTSTAMP", "DTSTART", "DTEND"):
            assert len(event[key]) == 16 and event[key].endswith("Z"), event[key]
        assert event["DTSTART"] < event["DTEND"]
    assert len({e["UID"] for e in events}) == 8
    selection = next(e for e in events if e["UID"] == f"{A}-{TERM}-selection@footprint")
    assert (selection["DTSTART"], selection["DTEND"]) == ("20240223T000000Z", "20240229T090000Z")
    assert selection["SUMMARY"].startswith("勾選 Selection (112學年度第1學期 / term 11201")
    assert "\\," in selection["SUMMARY"]  # the comma of the English term name is escaped
    # the same schedule gives the same bytes (DTSTAMP is when the window was last set)
    assert world.get(f"/schools/{A}/terms/{TERM}/calendar.ics", "t1").get_data() == data


def test_an_unset_term_has_no_feed_and_another_school_none_either(world):
    problem_of(world.get(f"/schools/{A}/terms/{TERM}/calendar.ics", "s1"), 404, "not_found")
    world.set_window("selection", taipei(2024, 2, 23, 8), taipei(2024, 2, 29, 17))
    problem_of(world.get(f"/schools/{A}/terms/{TERM}/calendar.ics", "sb"), 404, "not_found")
    problem_of(world.get(f"/schools/{A}/terms/1120x/calendar.ics", "s1"), 422, "invalid_term")


def test_folding_and_escaping():
    line = "SUMMARY:" + "成果上傳" * 30
    folded = fold(line)
    assert folded.endswith(b"\r\n")
    pieces = folded[:-2].split(b"\r\n")
    assert all(len(p) <= 75 for p in pieces) and all(p.startswith(b" ") for p in pieces[1:])
    assert b"".join([pieces[0]] + [p[1:] for p in pieces[1:]]).decode() == line
    assert fold("SHORT:x") == b"SHORT:x\r\n"
    assert escape("a,b;c\\d\ne") == "a\\,b\\;c\\\\d\\ne"
