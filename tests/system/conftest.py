"""System fixtures: the gateway and services as separate gunicorn web processes and worker processes on the
real RabbitMQ, in a RabbitMQ virtual host of their own (so a developer's `make services` on the same broker
cannot steal events), sharing the suite's document store (databases of their own on it)."""
from __future__ import annotations

import subprocess
import uuid

import pytest

from tests.conftest import free_port, test_documents
from tests.otlp_receiver import OtlpReceiver


def own_vhost(rabbitmq: str):
    """A RabbitMQ virtual host of its own (a generator: yields its URL, deletes it afterwards). Two platforms in
    one vhost would compete on the same queue names and take each other's events."""
    vhost = f"footprint-test-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["rabbitmqctl", "add_vhost", vhost], capture_output=True).returncode == 0
    if made:
        subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], capture_output=True,
                       check=True)
    yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}" if made else rabbitmq
    if made:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True)


@pytest.fixture(scope="session")
def vhost_url(rabbitmq):
    yield from own_vhost(rabbitmq)


@pytest.fixture(scope="session")
def otlp():
    receiver = OtlpReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def s3_media_url():
    """moto's S3 server over real HTTP, standing in for MinIO (the minio SDK talks to it)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"s3://footprint:footprint-secret@127.0.0.1:{port}/footprint-media"
    server.stop()


@pytest.fixture(scope="session")
def processes(vhost_url, otlp, s3_media_url, tmp_path_factory):
    from deploy.services import ProcessSet

    var = tmp_path_factory.mktemp("system-var")
    from deploy.wsgi import SERVICES

    documents = test_documents(for_module=True)
    procs = ProcessSet(ports={name: free_port() for name in [*SERVICES, "central"]}, var_dir=str(var), env={
        "DOCUMENTS_URL": documents["documents_url"], "DOCUMENTS_DB_PREFIX": documents["documents_prefix"],
        "BUS_URL": vhost_url, "MEDIA_URL": s3_media_url, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OUTBOX_POLL_SECONDS": "0.2", "GUNICORN_THREADS": "16"})
    procs.start(timeout=120)  # per process; starting a dozen Python processes on a loaded 2-core box is slow
    yield procs
    procs.stop()
