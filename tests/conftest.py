"""Shared fixtures: one real document store for the suite (its databases fresh per test), the identity
service in-process, tokens.

No mongomock: every service test and system test talks to the SecantusDB daemon the suite starts
(deploy/docstore.py) over the MongoDB wire protocol, so unique indexes, atomic updates and concurrency
behave as on MongoDB.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid

import pytest

from shared.config import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rabbitmq_available(timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=timeout):
            return True
    except OSError:
        return False


def rabbitmq_accepts_logins() -> bool:
    import pika

    try:
        pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672, credentials=pika.PlainCredentials(
            "guest", "guest"), connection_attempts=1, socket_timeout=5, blocked_connection_timeout=5)).close()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def rabbitmq() -> str:
    """The real RabbitMQ at 127.0.0.1:5672, started if it is down."""
    if not rabbitmq_available():
        subprocess.run(["rabbitmq-server", "-detached"], check=False)
        # The port opens a moment before the broker accepts logins: wait for a login, not for the port.
        deadline = time.monotonic() + 120
        while not rabbitmq_accepts_logins() and time.monotonic() < deadline:
            time.sleep(1)
    assert rabbitmq_available(), "RabbitMQ is not reachable at 127.0.0.1:5672"
    return "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture(scope="session", autouse=True)
def docstore(tmp_path_factory):
    """The suite's document store: one SecantusDB daemon on a free port and a data directory of its own."""
    from deploy.docstore import DocumentStoreDaemon

    root = tmp_path_factory.mktemp("docstore")
    daemon = DocumentStoreDaemon(root / "data", log_path=root / "docstore.log").start(timeout=120)  # loaded box: slow
    os.environ["FOOTPRINT_TEST_DOCUMENTS_URL"] = daemon.url
    yield daemon
    daemon.stop()


_handed_out: list[str] = []


def test_documents(*, for_module: bool = False) -> dict:
    """Settings fields that give a runtime databases of its own on the suite's store: dropped after the test,
    or, ``for_module``, kept for a module- or session-scoped fixture (the store's directory goes with the run)."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    if not for_module:
        _handed_out.append(prefix)
    return {"documents_url": os.environ["FOOTPRINT_TEST_DOCUMENTS_URL"], "documents_prefix": prefix}


test_documents.__test__ = False  # a helper, not a test


@pytest.fixture(autouse=True)
def drop_test_databases(docstore):
    yield
    if not _handed_out:
        return
    import pymongo

    prefixes = tuple(f"{p}_" for p in _handed_out)
    _handed_out.clear()
    with pymongo.MongoClient(docstore.url) as client:
        for name in client.list_database_names():
            if name.startswith(prefixes):
                client.drop_database(name)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(service="identity", bus_url="memory://", **test_documents(), var_dir=tmp_path,
                    relay_poll_seconds=0.05, consumer_backoff_ms=10, consumer_max_retries=2)


@pytest.fixture
def identity_runtime(settings):
    from services.identity.app import create_runtime

    runtime = create_runtime(settings)
    yield runtime
    runtime.stop_workers()


@pytest.fixture
def demo(identity_runtime):
    from services.identity.domain import seed_demo

    return seed_demo(identity_runtime.state["identity"])


@pytest.fixture
def client(identity_runtime, demo):
    return identity_runtime.create_app().test_client()


def login(client, school: str, username: str, password: str = "footprint-demo") -> dict:
    response = client.post("/api/v1/auth/login", json={"school": school, "username": username, "password": password})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def bearer(tokens: dict | str) -> dict:
    token = tokens if isinstance(tokens, str) else tokens["access_token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(autouse=True, scope="module")
def fresh_memory_bus():
    """kombu's memory:// broker is one per process: give each test module an empty one, as each process has."""
    from kombu.transport import memory

    memory.Transport.global_state.clear()
    memory.Channel.queues.clear()
    memory.Channel.events.clear()
    yield
