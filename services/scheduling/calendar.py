"""A school's term windows as an iCalendar feed (RFC 5545): one VEVENT per window, times in UTC (no VTIMEZONE
needed), CRLF line ends, long lines folded at 75 octets without splitting a UTF-8 character."""
from __future__ import annotations

from datetime import datetime, timezone

from .domain import ScheduleView, shown, term_label, utc, window_name

PRODID = "-//Footprint//Scheduling 1.0//ZH-TW"


def escape(text: str) -> str:
    """TEXT value escaping (RFC 5545 §3.3.11)."""
    return (text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n"))


def fold(line: str) -> bytes:
    """One content line, folded so that no physical line exceeds 75 octets (continuations start with a space)."""
    data = line.encode("utf-8")
    if len(data) <= 75:
        return data + b"\r\n"
    out, current, limit = [], b"", 75
    for char in line:
        encoded = char.encode("utf-8")
        if len(current) + len(encoded) > limit:
            out.append(current)
            current, limit = b"", 74  # a continuation line starts with one space
        current += encoded
    out.append(current)
    return b"\r\n ".join(out) + b"\r\n"


def ics_time(value: datetime) -> str:
    return utc(value).strftime("%Y%m%dT%H%M%SZ")


def calendar(view: ScheduleView, *, host: str = "footprint") -> bytes:
    term_zh, term_en = term_label(view.term)
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN", "METHOD:PUBLISH",
             f"X-WR-CALNAME:{escape(f'{view.school} {term_zh} 學習歷程時程 / Portfolio schedule, {term_en}')}",
             "X-WR-TIMEZONE:Asia/Taipei"]
    for window in view.windows:
        name_zh, name_en = window_name(window.kind)
        stamp = window.updated_at or datetime.now(timezone.utc)
        description = (f"{term_zh}{name_zh}：{shown(window.starts_at)} 至 {shown(window.ends_at)}（臺灣時間）\n"
                       f"{name_en.capitalize()}, {term_en}: {shown(window.starts_at)} to {shown(window.ends_at)} "
                       f"(Taiwan time)")
        lines += ["BEGIN:VEVENT",
                  f"UID:{view.school}-{view.term}-{window.kind}@{host}",
                  f"DTSTAMP:{ics_time(stamp)}",
                  f"DTSTART:{ics_time(window.starts_at)}",
                  f"DTEND:{ics_time(window.ends_at)}",
                  f"SEQUENCE:{max(window.revision - 1, 0)}",
                  f"SUMMARY:{escape(f'{name_zh} {name_en.capitalize()} ({term_zh} / {term_en})')}",
                  f"DESCRIPTION:{escape(description)}",
                  "TRANSP:TRANSPARENT",
                  "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return b"".join(fold(line) for line in lines)
