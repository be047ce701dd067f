"""One real request, one trace: gateway → identity → publish → the gateway's consumer, each span's parent right."""
from __future__ import annotations

import requests

from tests.system.test_platform import auth, sign_in, wait_until


def test_one_trace_runs_from_gateway_through_identity_and_the_bus_to_a_consumer(processes, otlp):
    gateway = processes.url("gateway")
    admin = sign_in(processes, "admin")
    users = requests.get(f"{gateway}/api/v1/schools/999001/users?role=student", headers=auth(admin), timeout=60).json()
    student_id = users["items"][0]["id"]
    response = requests.post(f"{gateway}/api/v1/users/{student_id}/password-reset", headers=auth(admin), timeout=60)
    assert response.status_code == 200
    # The gateway's SERVER span id comes back in no header, so find the trace by the request id it carries.
    request_id = response.headers["X-Request-ID"]

    def collected():
        roots = [s for s in otlp.spans if s.attributes.get("footprint.request_id") == request_id
                 and s.service == "gateway" and s.kind == "SERVER"]
        if not roots:
            return None
        spans = otlp.trace(roots[0].trace_id)
        # each process exports on its own schedule: wait until every hop has arrived
        wanted = {("gateway", "SERVER"), ("gateway", "CLIENT"), ("identity", "SERVER"), ("identity", "PRODUCER"),
                  ("gateway", "CONSUMER")}
        ids = {s.span_id for s in spans}
        linked = all(s.parent_id in ids for s in spans if s.parent_id)
        return spans if wanted <= {(s.service, s.kind) for s in spans} and linked else None

    # generous: right after another module restarted the broker, consumers may still be in their reconnect backoff
    spans = wait_until(collected, timeout=60)
    assert spans, "the trace never reached the consumer"
    by_id = {s.span_id: s for s in spans}

    def one(service, kind, name_part=""):
        found = [s for s in spans if s.service == service and s.kind == kind and name_part in s.name]
        assert len(found) == 1, (service, kind, [(s.service, s.kind, s.name) for s in spans])
        return found[0]

    gateway_server = one("gateway", "SERVER")
    gateway_client = one("gateway", "CLIENT")
    identity_server = one("identity", "SERVER", "password-reset")
    consume = one("gateway", "CONSUMER", "gateway.access-revocation")
    # The relay may have tried to publish more than once (a publish whose connection broke, e.g. right after
    # another module restarted the broker, is retried: at-least-once); every try is a span of the same event,
    # and the consumer's span is a child of the one that arrived.
    publishes = [s for s in spans if s.service == "identity" and s.kind == "PRODUCER" and "publish" in s.name]
    assert publishes and len({p.attributes["messaging.message.id"] for p in publishes}) == 1, publishes
    (publish,) = [p for p in publishes if p.span_id == consume.parent_id]

    assert gateway_server.parent_id == ""  # the root: the client sent no trace context
    assert gateway_client.parent_id == gateway_server.span_id
    assert identity_server.parent_id == gateway_client.span_id
    assert publish.parent_id == identity_server.span_id  # relayed later, by another thread, same trace
    assert consume.parent_id == publish.span_id
    assert publish.attributes["messaging.system"] == "rabbitmq"
    assert publish.attributes["messaging.rabbitmq.destination.routing_key"] == "identity.user.updated.v1"
    assert consume.attributes["messaging.message.id"] == publish.attributes["messaging.message.id"]
    assert consume.attributes["footprint.school"] == "999001" and identity_server.attributes["footprint.school"] == "999001"
    assert consume.resource_service == "gateway" and identity_server.resource_service == "identity"
    assert {s.trace_id for s in spans} == {gateway_server.trace_id} and len(by_id) == len(spans)

