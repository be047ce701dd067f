"""Gateway: routes /api/v1/… to services by path prefix, streaming bodies both ways.

On the way in: request id, per-IP and per-user rate limits, token verification (services verify again),
the revocation check, body-size limits. On the way out: the service's answer, streamed as it arrives.
It also serves /healthz, /readyz (every dependency) and the merged OpenAPI document.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import urllib3
from werkzeug.exceptions import NotFound
from flask import Flask, Response, g, request, send_from_directory, stream_with_context

from shared.config import Settings, service_url
from shared.errors import DomainError
from shared.http import json_response, problem_response
from shared.runtime import Runtime, ServiceSpec
from shared.tracing import SpanKind, inject_headers, span

from . import consumers, routes
from .ratelimit import TokenBuckets

log = logging.getLogger("footprint.gateway")

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}
# Replaced, not copied: the gateway's own CLIENT span becomes the parent (a copied header would travel twice).
NOT_FORWARDED = HOP_BY_HOP | {"traceparent", "tracestate", "x-forwarded-for", "x-request-id"}
CHUNK = 256 * 1024  # bigger reads cost less Python per byte; still a fixed, small buffer per request
# The web portal: plain static files (no build step), same origin as /api/v1.
PORTAL_DIR = Path(__file__).resolve().parent.parent / "portal"
# Scripts and styles only from the portal itself; blob: for previews of files the portal fetched with the token.
PORTAL_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
              "media-src 'self' blob:; frame-src 'self' blob:; object-src 'none'; connect-src 'self'; "
              "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class BodyTooLarge(Exception):
    pass


class LimitedBody:
    """File-like view of the incoming body that stops reading past ``limit`` (so oversize uploads stop mid-stream)."""

    def __init__(self, stream, limit: int):
        self.stream = stream
        self.limit = limit
        self.read_bytes = 0
        self.exceeded = False

    def read(self, size: int = CHUNK) -> bytes:
        chunk = self.stream.read(min(size if size and size > 0 else CHUNK, CHUNK))
        self.read_bytes += len(chunk)
        if self.read_bytes > self.limit:
            self.exceeded = True
            raise BodyTooLarge()
        return chunk

    def __iter__(self):
        while chunk := self.read(CHUNK):
            yield chunk


def _int_env(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


class Gateway:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.http = urllib3.PoolManager(num_pools=16, maxsize=int(_int_env("GATEWAY_UPSTREAM_POOL", 64)), block=False,
                                        blocksize=CHUNK)
        self.upstreams = {name: service_url(name) for name in routes.routed_services()}
        self.ip_limits = TokenBuckets(_int_env("GATEWAY_IP_RATE", 50), int(_int_env("GATEWAY_IP_BURST", 200)))
        self.user_limits = TokenBuckets(_int_env("GATEWAY_USER_RATE", 10), int(_int_env("GATEWAY_USER_BURST", 40)))
        self.trusted_proxies = int(_int_env("GATEWAY_TRUSTED_PROXIES", 0))
        self.revocations = consumers.RevocationCheck()
        self.read_timeout = _int_env("GATEWAY_UPSTREAM_TIMEOUT", 120)
        self._openapi: tuple[float, dict] | None = None
        self._openapi_lock = threading.Lock()

    def client_ip(self) -> str:
        if self.trusted_proxies:
            hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
            if len(hops) >= self.trusted_proxies:
                return hops[-self.trusted_proxies]
        return request.remote_addr or "unknown"

    # -- the proxy ----------------------------------------------------------------------------------------
    def forward(self, path: str) -> Response:
        service = routes.service_for(path)
        if service is None or service not in self.upstreams:
            raise DomainError("route_not_found")
        ip = self.client_ip()
        wait = self.ip_limits.take(f"ip:{ip}")
        if wait:
            return self._limited(wait)
        if (request.method, path) not in routes.PUBLIC:
            principal = self.runtime.verifier.verify(_bearer())
            g.principal = principal
            if self.revocations.revoked(principal.user_id, principal.school, principal.issued_at_ms):
                raise DomainError("token_revoked")
            wait = self.user_limits.take(f"user:{principal.user_id}")
            if wait:
                return self._limited(wait)
        limit = routes.body_limit(path)
        length = request.content_length
        if length is not None and length > limit:
            raise DomainError("payload_too_large", f"at most {limit} bytes")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
        headers["X-Request-ID"] = g.request_id
        # Services record where a request came from (audit trails): give them the address the gateway trusts,
        # never a client-written X-Forwarded-For.
        headers["X-Forwarded-For"] = ip
        headers["X-Forwarded-Proto"] = request.scheme
        body = None
        chunked = False
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            if length:
                headers["Content-Length"] = str(length)
                body = LimitedBody(request.stream, limit)
            elif request.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body, chunked = iter(LimitedBody(request.stream, limit)), True
            else:
                headers["Content-Length"] = "0"
        url = self.upstreams[service] + path + (f"?{request.query_string.decode('latin-1')}" if request.query_string else "")
        attributes = {"http.request.method": request.method, "server.address": service, "url.full": url,
                      "footprint.upstream": service}
        with span("gateway", f"{request.method} {service}", kind=SpanKind.CLIENT, attributes=attributes) as current:
            inject_headers(headers)
            try:
                upstream = self.http.urlopen(request.method, url, body=body, headers=headers, chunked=chunked,
                                             preload_content=False, redirect=False, retries=False, decode_content=False,
                                             timeout=urllib3.Timeout(connect=3.0, read=self.read_timeout))
            except Exception as exc:
                if isinstance(body, LimitedBody) and body.exceeded or isinstance(exc, BodyTooLarge) or \
                        isinstance(exc.__context__, BodyTooLarge):
                    raise DomainError("payload_too_large", f"at most {limit} bytes") from None
                if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
                    raise DomainError("upstream_timeout", service) from exc
                log.warning("upstream %s failed: %s", service, exc)
                raise DomainError("upstream_unavailable", service) from exc
            current.set_attribute("http.response.status_code", upstream.status)
        out_headers = [(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP]
        if upstream.headers.get("Content-Length"):
            out_headers.append(("Content-Length", upstream.headers["Content-Length"]))

        if request.method == "HEAD" or upstream.status in (204, 304):
            upstream.release_conn()  # no body follows
            return Response(b"", status=upstream.status, headers=out_headers)

        def relay():
            finished = False
            try:
                yield from upstream.stream(CHUNK, decode_content=False)
                finished = True
            finally:
                # A connection goes back to the pool only when its response was read to the end. One the client
                # abandoned mid-body still carries the rest of that body: reused, the next request through it
                # (another user's) would read those bytes as its own response. Close it instead.
                if not finished:
                    upstream.close()
                upstream.release_conn()

        return Response(stream_with_context(relay()), status=upstream.status, headers=out_headers, direct_passthrough=True)

    def _limited(self, wait: float) -> Response:
        retry = max(1, int(wait + 0.999))
        return problem_response("rate_limited", headers={"Retry-After": str(retry)}, retry_after=retry)

    # -- readiness and the API document -------------------------------------------------------------------
    def upstream_ready(self, service: str) -> None:
        response = self.http.request("GET", f"{self.upstreams[service]}/readyz", retries=False,
                                     timeout=urllib3.Timeout(connect=1.0, read=2.0))
        if response.status != 200:
            raise RuntimeError(f"{service} answered {response.status}: {response.data[:200]!r}")

    def openapi(self) -> dict:
        with self._openapi_lock:
            if self._openapi and time.monotonic() - self._openapi[0] < 30:
                return self._openapi[1]
        document = {"openapi": "3.1.0",
                    "info": {"title": "Footprint 學習歷程檔案平台 API", "version": "1",
                             "description": "One document for every service behind the gateway."},
                    "servers": [{"url": "/"}], "paths": {}, "components": {"schemas": {}, "securitySchemes": {}}}
        missing = []
        for service, base in self.upstreams.items():
            try:
                response = self.http.request("GET", f"{base}/openapi.json", retries=False, timeout=3.0)
                part = response.json()
            except Exception:
                missing.append(service)
                continue
            document["paths"].update(part.get("paths", {}))
            for key in ("schemas", "securitySchemes"):
                document["components"][key].update(part.get("components", {}).get(key, {}))
        for path, summary in (("/healthz", "Gateway liveness"), ("/readyz", "Readiness of the gateway and every dependency"),
                              ("/api/v1/openapi.json", "This document")):
            document["paths"][path] = {"get": {"operationId": f"gateway.{path.strip('/').replace('/', '.')}",
                                               "summary": summary, "tags": ["gateway"],
                                               "responses": {"200": {"description": "OK"}}}}
        if missing:
            document["x-footprint-missing-services"] = missing
        else:
            with self._openapi_lock:
                self._openapi = (time.monotonic(), document)
        return document


def _bearer() -> str:
    from shared.auth import bearer_token

    return bearer_token()


def install(app: Flask, runtime: Runtime) -> None:
    gateway = Gateway(runtime)
    app.extensions["footprint.gateway"] = gateway
    for service in gateway.upstreams:
        app.extensions["footprint.ready_info"][f"service:{service}"] = (lambda s=service: gateway.upstream_ready(s))

    @app.get("/api/v1/openapi.json")
    def merged_openapi():
        return json_response(gateway.openapi())

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

    @app.route("/api/v1/<path:rest>", methods=methods)
    def proxy(rest):
        return gateway.forward(request.path)

    @app.route("/api/<path:rest>", methods=methods)
    def unknown_version(rest):
        return problem_response("route_not_found", "use /api/v1/")

    @app.get("/")
    @app.get("/<path:name>")
    def portal(name="index.html"):
        # Unhashed file names, so every load revalidates (ETag/Last-Modified → 304): a deploy is seen at once.
        try:
            response = send_from_directory(PORTAL_DIR, name, max_age=0)
        except NotFound:
            return problem_response("not_found", "no such file in the portal")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["Content-Security-Policy"] = PORTAL_CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response


SPEC = ServiceSpec(name="gateway", subscriptions=consumers.subscriptions, install_api=install)


def create_runtime(settings: Settings | None = None) -> Runtime:
    return Runtime(SPEC, settings or Settings.from_env("gateway"))
