"""The kit's mongomock shortcuts give mongomock's own answers, only faster."""
from __future__ import annotations

import time

import pytest
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.documents import connect_documents, database


@pytest.fixture
def users():
    connect_documents("docs_test", "mongomock://")
    collection = database("docs_test")["users"]
    collection.create_index([("school", 1), ("username", 1)], unique=True)
    collection.create_index([("school", 1), ("student_no", 1)], unique=True,
                            partialFilterExpression={"student_no": {"$exists": True}})
    return collection


def test_bulk_insert_still_refuses_duplicates(users):
    users.insert_many([{"_id": f"u{i}", "school": "1", "username": f"n{i}"} for i in range(30)])
    with pytest.raises((BulkWriteError, DuplicateKeyError)):
        users.insert_many([{"_id": f"v{i}", "school": "1", "username": f"m{i}"} for i in range(25)]
                          + [{"_id": "dup", "school": "1", "username": "n3"}])
    with pytest.raises((BulkWriteError, DuplicateKeyError)):
        users.insert_many([{"_id": f"w{i}", "school": "2", "username": "same"} for i in range(25)])
    with pytest.raises(DuplicateKeyError):
        users.insert_one({"_id": "x", "school": "1", "username": "n1"})
    # partial index: many documents without student_no are fine, a repeated student_no is not
    users.insert_many([{"_id": f"s{i}", "school": "3", "username": f"s{i}"} for i in range(25)])
    with pytest.raises((BulkWriteError, DuplicateKeyError)):
        users.insert_many([{"_id": f"t{i}", "school": "3", "username": f"t{i}", "student_no": "42"} for i in range(25)])


def test_id_lookup_is_exact_and_fast(users):
    users.insert_many([{"_id": f"u{i}", "school": "1", "username": f"n{i}"} for i in range(5000)])
    assert users.find_one({"_id": "u4321"})["username"] == "n4321"
    assert users.find_one({"_id": "missing"}) is None
    assert users.count_documents({"_id": {"$in": ["u1", "u2"]}}) == 2  # operators take mongomock's own path
    started = time.perf_counter()
    for i in range(2000):
        users.find_one({"_id": f"u{i}"})
    assert time.perf_counter() - started < 1.0


def test_ten_thousand_inserts_are_not_quadratic(users):
    started = time.perf_counter()
    for batch in range(10):
        users.insert_many([{"_id": f"b{batch}-{i}", "school": "1", "username": f"b{batch}-{i}", "student_no": f"{batch}{i}"}
                           for i in range(1000)])
    assert users.count_documents({}) == 10000
    assert time.perf_counter() - started < 10  # stock mongomock: minutes
