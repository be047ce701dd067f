"""Bulk import of 10,000 students (CSV and XLSX), in-process against the document store.

Builds identity's runtime in this process (services.identity.app.create_runtime; documents on a SecantusDB
daemon the benchmark starts in a temporary directory (``--documents-url`` for a MongoDB instead), memory:// bus, keys under a temporary directory; the outbox relay is not started, so events stay in the
documents' outboxes as they would until a relay picks them up), seeds the demo schools, generates a file of
N students with valid Taiwanese national IDs, and times services.identity.imports.import_users as the
demo admin of 999001 (roles school_admin, registrar):

  1. CSV dry run        parse + row checks + fingerprints, nothing written
  2. CSV first import   created = N (argon2id "initial" hashes on every core, AES-GCM sealing, bulk insert)
  3. CSV re-import      unchanged = N, nothing written
  4. XLSX re-import     the same rows as .xlsx (openpyxl write_only) into the same school: unchanged = N
  5. XLSX first import  the same .xlsx into the second demo school 999002 (its own admin): created = N

It verifies afterwards that (school, username) and (school, student_no) are unique.

    .venv/bin/python -m bench.import_students [--rows 10000] [--no-second-school]
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import machine, print_table

# Letter values of the national ID check digit (A=10 … H=17, I=34, J=18 … N=22, O=35, P=23 … V=29, W=32,
# X=30, Y=31, Z=33): written out here on purpose, independently of services.identity.security.
LETTER_VALUES = {"A": 10, "B": 11, "C": 12, "D": 13, "E": 14, "F": 15, "G": 16, "H": 17, "I": 34, "J": 18,
                 "K": 19, "L": 20, "M": 21, "N": 22, "O": 35, "P": 23, "Q": 24, "R": 25, "S": 26, "T": 27,
                 "U": 28, "V": 29, "W": 32, "X": 30, "Y": 31, "Z": 33}
WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 1)  # for d1..d8; the check digit has weight 1
HEADER = ["學號", "姓名", "班級", "年級", "身分證字號", "初始密碼"]
SURNAMES = "陳林黃張李王吳劉蔡楊許鄭謝郭洪曾邱廖賴周"
GIVEN = "家豪志明俊傑建宏雅婷怡君欣怡佳穎宗翰承恩冠廷詩涵"


def national_id(letter: str, gender: int, serial: int) -> str:
    """A valid ID: letter, gender digit (1/2), 7 serial digits, check digit making the weighted sum % 10 == 0."""
    value = LETTER_VALUES[letter]
    digits = [gender] + [int(c) for c in f"{serial:07d}"]
    total = value // 10 + (value % 10) * 9 + sum(d * w for d, w in zip(digits, WEIGHTS))
    check = (10 - total % 10) % 10
    return f"{letter}{gender}{serial:07d}{check}"


def students(n: int) -> list[dict]:
    """n distinct students in grades 10-12, 40 to a class (101…, 201…, 301…)."""
    letters = sorted(LETTER_VALUES)
    rows = []
    per_grade = -(-n // 3)
    for i in range(n):
        grade = 10 + i // per_grade
        within = i % per_grade
        class_name = f"{grade - 9}{within // 40 + 1:02d}"
        rows.append({
            "學號": f"{100 + grade}{i:05d}",
            "姓名": SURNAMES[i % len(SURNAMES)] + GIVEN[(i * 7) % len(GIVEN)] + GIVEN[(i * 13 + 1) % len(GIVEN)],
            "班級": class_name,
            "年級": grade,
            "身分證字號": national_id(letters[i % 26], 1 + (i // 26) % 2, i),
            "初始密碼": f"init-{i:06d}",
        })
    return rows


def to_csv(rows: list[dict]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(HEADER)
    for row in rows:
        writer.writerow([row[h] for h in HEADER])
    return text.getvalue().encode("utf-8-sig")  # with BOM, as Excel saves "CSV UTF-8"


def to_xlsx(rows: list[dict]) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("學生")
    sheet.append(HEADER)
    for row in rows:
        # Numbers where a spreadsheet would hold numbers (班級, 年級); the importer turns them back into text.
        sheet.append([row["學號"], row["姓名"], int(row["班級"]), row["年級"], row["身分證字號"], row["初始密碼"]])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def assert_unique(user_model) -> str:
    """What the unique indexes enforce, checked once more over the whole collection."""
    usernames, numbers, docs = set(), set(), 0
    for doc in user_model._get_collection().find({}, {"school": 1, "username": 1, "student.student_no": 1}):
        docs += 1
        key = (doc.get("school"), doc["username"])
        if key in usernames:
            raise SystemExit(f"duplicate (school, username) {key}")
        usernames.add(key)
        number = (doc.get("student") or {}).get("student_no")
        if number is not None:
            if (doc.get("school"), number) in numbers:
                raise SystemExit(f"duplicate (school, student_no) {(doc.get('school'), number)}")
            numbers.add((doc.get("school"), number))
    return f"{docs:,} users, (school, username) and (school, student_no) unique"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10000, help="students in the file (default 10000)")
    parser.add_argument("--second-school", action=argparse.BooleanOptionalAction, default=True,
                        help="also import the XLSX as new students into 999002 (default on)")
    parser.add_argument("--documents-url", default="", help="a mongodb:// URL (default: a SecantusDB daemon of its own)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    var_dir = Path(tempfile.mkdtemp(prefix="footprint-bench-import-"))
    os.environ["BUS_URL"] = "memory://"  # nothing here talks to RabbitMQ
    daemon = None
    if not args.documents_url:
        from deploy.docstore import DocumentStoreDaemon

        daemon = DocumentStoreDaemon(var_dir / "documents").start()
        args.documents_url = daemon.url
    try:
        run(args, var_dir)
    finally:
        if daemon:
            daemon.stop()
        shutil.rmtree(var_dir, ignore_errors=True)
    print(f"Wall time {time.perf_counter() - started:.1f}s.")


def run(args, var_dir: Path) -> None:
    from services.identity.app import create_runtime
    from services.identity.domain import seed_demo
    from services.identity.imports import import_users
    from services.identity.models import User
    from services.identity.security import normalise_national_id
    from shared.auth import Principal
    from shared.config import Settings

    print(f"Machine: {machine()}; argon2 hashing threads: {os.cpu_count()}")
    runtime = create_runtime(Settings(service="identity", var_dir=var_dir, documents_url=args.documents_url,
                                      documents_prefix=f"bench{os.getpid()}"))
    identity = runtime.state["identity"]
    seed_demo(identity)

    t0 = time.perf_counter()
    rows = students(args.rows)
    for row in rows:
        if normalise_national_id(row["身分證字號"]) != row["身分證字號"]:
            raise SystemExit(f"generator produced an invalid ID {row['身分證字號']}")
    if len({r["身分證字號"] for r in rows}) != len(rows) or len({r["學號"] for r in rows}) != len(rows):
        raise SystemExit("generator produced duplicates")
    csv_bytes = to_csv(rows)
    t_csv = time.perf_counter() - t0
    t0 = time.perf_counter()
    xlsx_bytes = to_xlsx(rows)
    t_xlsx = time.perf_counter() - t0
    print(f"Generated {len(rows):,} students, every national ID accepted by normalise_national_id: CSV "
          f"{len(csv_bytes) / 1024:,.0f} KiB in {t_csv:.2f}s, XLSX {len(xlsx_bytes) / 1024:,.0f} KiB in {t_xlsx:.2f}s "
          f"(not part of the timings)\n", flush=True)

    def principal(school: str) -> Principal:
        admin = User.objects(school=school, username="admin").first()
        return Principal(user_id=admin.id, username="admin", school=school, city="TPE",
                         roles=("school_admin", "registrar"), issued_at=int(time.time()))

    from concurrent.futures import ThreadPoolExecutor

    from services.identity.security import hash_password

    sample = [f"init-{i:06d}" for i in range(400)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        t0 = time.perf_counter()
        list(pool.map(lambda pw: hash_password(pw, initial=True), sample))
        hash_rate = len(sample) / (time.perf_counter() - t0)
    print(f"argon2id 'initial' profile (t=1, 4 MiB) alone: {hash_rate:,.0f} hashes/s on {os.cpu_count()} threads "
          f"(floor for a {args.rows:,}-row first import: {args.rows / hash_rate:.1f}s)\n")

    steps = [("CSV dry run", "999001", csv_bytes, True, {"created": len(rows)}),
             ("CSV first import", "999001", csv_bytes, False, {"created": len(rows)}),
             ("CSV re-import", "999001", csv_bytes, False, {"unchanged": len(rows)}),
             ("XLSX re-import (same school)", "999001", xlsx_bytes, False, {"unchanged": len(rows)})]
    if args.second_school:
        steps.append(("XLSX first import (999002)", "999002", xlsx_bytes, False, {"created": len(rows)}))
    table_rows, problems = [], []
    for label, school, data, dry_run, expected in steps:
        before = User.objects(school=school).count()
        t0 = time.perf_counter()
        report = import_users(identity, principal(school), school, "students", io.BytesIO(data), dry_run=dry_run)
        seconds = time.perf_counter() - t0
        written = User.objects(school=school).count() - before
        ok = all(report[k] == v for k, v in expected.items()) and report["rejected"] == 0
        if not ok:
            problems.append(f"{label}: expected {expected}, got " +
                            str({k: report[k] for k in ("created", "updated", "unchanged", "rejected")}) +
                            (f"; first errors {report['errors'][:3]}" if report["errors"] else ""))
        table_rows.append([label, school, report["rows"], report["created"], report["updated"], report["unchanged"],
                           report["rejected"], written, seconds, report["rows"] / seconds, "yes" if ok else "NO"])
        print(f"  {label}: {seconds:.2f}s" + (f"; {assert_unique(User)}" if written else ""), flush=True)
    print()
    print_table(["step", "school", "rows", "created", "updated", "unchanged", "rejected", "users written", "seconds",
                 "rows/s", "as expected"], table_rows, title=f"import_users, {args.rows:,} students")
    for problem in problems:
        print("UNEXPECTED: " + problem)
    pending = sum(len(d.get("outbox", [])) for d in User._get_collection().find({"outbox.event.id": {"$exists": True}},
                                                                                 {"outbox": 1}))
    print(f"Events waiting in outboxes (identity.user.created.v1; the relay is not running here): {pending:,}")


if __name__ == "__main__":
    main()
