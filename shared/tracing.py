"""OpenTelemetry for every process: one provider per process, created after gunicorn forks.

W3C trace context crosses HTTP (traceparent headers) and the bus (message headers). Spans carry
``footprint.service`` so one trace can be read per service even when several services share a process
(the embedded run). OTLP/HTTP export is on when OTEL_EXPORTER_OTLP_ENDPOINT (or the traces-specific
variable) is set; all other knobs are the SDK's standard OTEL_* variables.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator, Mapping, MutableMapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

_lock = threading.Lock()
_provider: TracerProvider | None = None


def init_tracing(process_name: str, *, extra_processors: list[SpanProcessor] | None = None) -> TracerProvider:
    """Create this process's tracer provider once (idempotent); call it after fork."""
    global _provider
    with _lock:
        if _provider is None:
            resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", process_name),
                                        "service.namespace": "footprint"})
            provider = TracerProvider(resource=resource)
            if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
                provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            trace.set_tracer_provider(provider)
            _provider = provider
        for processor in extra_processors or []:
            _provider.add_span_processor(processor)
        return _provider


def shutdown_tracing() -> None:
    if _provider is not None:
        _provider.force_flush()


def tracer(service: str) -> trace.Tracer:
    return trace.get_tracer(f"footprint.{service}")


def inject_headers(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    inject(headers)
    return headers


def context_from(headers: Mapping[str, str]):
    # The W3C propagator looks up lower-case keys; HTTP header objects hand them out capitalised.
    return extract({key.lower(): value for key, value in headers.items()})


def current_carrier() -> dict[str, str]:
    """The current trace context as W3C headers (stored with outbox events so the relay can parent to it)."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


@contextmanager
def span(service: str, name: str, *, kind: SpanKind = SpanKind.INTERNAL, parent_headers: Mapping[str, str] | None = None,
         attributes: dict | None = None) -> Iterator[trace.Span]:
    """A span for ``service``; with parent_headers it continues the trace they carry."""
    ctx = context_from(parent_headers) if parent_headers is not None else None
    attrs = {"footprint.service": service, **(attributes or {})}
    with tracer(service).start_as_current_span(name, context=ctx, kind=kind, attributes=attrs) as current:
        try:
            yield current
        except Exception as exc:
            current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def attach(ctx) -> object:
    return otel_context.attach(ctx)


def detach(token) -> None:
    otel_context.detach(token)


__all__ = ["init_tracing", "shutdown_tracing", "tracer", "span", "inject_headers", "context_from", "current_carrier",
           "SpanKind", "Status", "StatusCode", "attach", "detach", "trace"]
