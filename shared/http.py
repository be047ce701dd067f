"""The HTTP kit every service (and the gateway) is built with.

- problem+json for every error (DomainError, werkzeug errors, bad JSON, pydantic validation, crashes);
- request ids (``X-Request-ID``, made up when absent) and a SERVER span per request continuing the caller's
  W3C trace context;
- ``/healthz`` (alive) and ``/readyz`` (each dependency checked);
- ``Api``: routes declared once with their pydantic body/response models, which also make the service's
  OpenAPI document at ``/openapi.json`` (the gateway merges them into ``/api/v1/openapi.json``).
"""
from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any, Callable

import mongoengine
import pymongo.errors
from flask import Blueprint, Flask, Response, g, request
from opentelemetry import trace
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from shared.errors import PROBLEM_CONTENT_TYPE, DomainError, field_error, problem
from shared.tracing import SpanKind, Status, StatusCode, attach, context_from, detach, tracer

log = logging.getLogger("footprint.http")

_HTTP_CODES = {400: "malformed_json", 401: "unauthenticated", 403: "forbidden", 404: "route_not_found",
               405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
               422: "validation_failed", 429: "rate_limited"}


def problem_response(code: str, detail: str | None = None, *, errors: list[dict] | None = None,
                     headers: dict | None = None, **extra: Any) -> Response:
    body = problem(code, detail, errors=errors, request_id=getattr(g, "request_id", None), **extra)
    response = Response(json.dumps(body, ensure_ascii=False), status=body["status"], content_type=PROBLEM_CONTENT_TYPE)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def json_response(data: Any, status: int = 200, headers: dict | None = None) -> Response:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    response = Response(json.dumps(data, ensure_ascii=False, default=str), status=status,
                        content_type="application/json; charset=utf-8")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def validation_errors(exc: ValidationError) -> list[dict]:
    errors = []
    for item in exc.errors(include_url=False):
        location = ".".join(str(part) for part in item["loc"]) or "body"
        errors.append(field_error(location, item["type"], item["msg"], f"欄位 {location} 不正確：{item['msg']}"))
    return errors


def read_json(model: type[BaseModel], *, max_bytes: int = 64 * 1024) -> BaseModel:
    """Parse the request body as ``model``: 415 not JSON, 413 too big, 400 malformed, 422 invalid fields."""
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise DomainError("unsupported_media_type", "send the body as application/json")
    if request.content_length is not None and request.content_length > max_bytes:
        raise DomainError("payload_too_large", f"at most {max_bytes} bytes")
    raw = request.stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise DomainError("payload_too_large", f"at most {max_bytes} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, 5000-digit numbers, [[[[… nested too deep
        raise DomainError("malformed_json", str(exc)[:200]) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DomainError("validation_failed", errors=validation_errors(exc)) from exc


def read_query(model: type[BaseModel]) -> BaseModel:
    try:
        return model.model_validate({k: v for k, v in request.args.items()})
    except ValidationError as exc:
        raise DomainError("validation_failed", errors=validation_errors(exc)) from exc


def create_app(service: str, *, ready_checks: dict[str, Callable[[], None]] | None = None) -> Flask:
    app = Flask(service)
    app.config["MAX_CONTENT_LENGTH"] = None  # limits are per route (read_json, the gateway, uploads)
    app.json.ensure_ascii = False
    app.extensions["footprint.service"] = service
    app.extensions["footprint.ready"] = dict(ready_checks or {})
    # Reported but not fatal: a dependency this process can serve without (the gateway's upstreams — one
    # service down must not take sign-in and every other route out of the load balancer).
    app.extensions["footprint.ready_info"] = {}
    app.extensions["footprint.apis"] = []
    _install_request_hooks(app, service)
    _install_error_handlers(app)

    @app.get("/healthz")
    def healthz():
        return json_response({"status": "alive", "service": service})

    @app.get("/readyz")
    def readyz():
        checks, ok, degraded = {}, True, False
        for critical, registry in ((True, app.extensions["footprint.ready"]), (False, app.extensions["footprint.ready_info"])):
            for name, check in registry.items():
                try:
                    check()
                    checks[name] = "ok"
                except Exception as exc:
                    ok, degraded = (False, degraded) if critical else (ok, True)
                    checks[name] = f"error: {type(exc).__name__}: {exc}"[:300]
        status = "unready" if not ok else "degraded" if degraded else "ready"
        return json_response({"status": status, "service": service, "checks": checks}, 200 if ok else 503)

    @app.get("/openapi.json")
    def openapi():
        return json_response(openapi_document(app))

    return app


def _install_request_hooks(app: Flask, service: str) -> None:
    @app.before_request
    def start_request():
        g.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
        g.started = time.perf_counter()
        route = request.url_rule.rule if request.url_rule else request.path
        parent = context_from(request.headers)
        current = tracer(service).start_span(
            f"{request.method} {route}", context=parent, kind=SpanKind.SERVER,
            attributes={"footprint.service": service, "http.request.method": request.method, "http.route": route,
                        "url.path": request.path, "footprint.request_id": g.request_id})
        g.span = current
        g.span_token = attach(trace.set_span_in_context(current, parent))

    @app.after_request
    def finish_request(response: Response):
        response.headers["X-Request-ID"] = getattr(g, "request_id", "")
        current = getattr(g, "span", None)
        if current is not None:
            current.set_attribute("http.response.status_code", response.status_code)
            principal = getattr(g, "principal", None)
            if principal is not None:
                current.set_attribute("footprint.school", principal.school or "")
                current.set_attribute("enduser.id", principal.user_id)
            if response.status_code >= 500:
                current.set_status(Status(StatusCode.ERROR))
        return response

    @app.teardown_request
    def end_span(exc):
        current = g.pop("span", None)
        token = g.pop("span_token", None)
        if current is not None:
            current.end()
        if token is not None:
            detach(token)


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def on_domain_error(exc: DomainError):
        return problem_response(exc.code, exc.detail, errors=exc.errors, headers=exc.headers, **exc.extra)

    @app.errorhandler(mongoengine.errors.ValidationError)
    def on_document_invalid(exc):
        # A document that fails its own schema: the input got past the API models; still the caller's 4xx.
        errors = [field_error(name, "invalid", str(err), f"欄位 {name} 不正確") for name, err in (exc.errors or {}).items()]
        return problem_response("validation_failed", str(exc.message)[:300], errors=errors)

    @app.errorhandler(pymongo.errors.ConnectionFailure)  # AutoReconnect, NetworkTimeout, ServerSelectionTimeout
    def on_documents_down(exc):
        # The store is restarting or unreachable: nothing was half-written (every change is one document
        # write), so the caller may simply retry. The driver reconnects by itself once it is back.
        log.warning("document store unavailable on %s %s: %s", request.method, request.path, exc)
        return problem_response("documents_unavailable", headers={"Retry-After": "2"})

    @app.errorhandler(HTTPException)
    def on_http_error(exc: HTTPException):
        code = _HTTP_CODES.get(exc.code or 500, "internal_error")
        return problem_response(code, exc.description if code != "internal_error" else None)

    @app.errorhandler(Exception)
    def on_crash(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        current = getattr(g, "span", None)
        if current is not None:
            current.record_exception(exc)
        return problem_response("internal_error")


# ---- OpenAPI ---------------------------------------------------------------------------------------------

class Api:
    """A service's routes, each declared once with its models; they make the OpenAPI document."""

    def __init__(self, name: str, title: str):
        self.name = name
        self.title = title
        self.blueprint = Blueprint(name, name)
        self.operations: list[dict] = []

    def route(self, method: str, rule: str, *, summary: str, body: type[BaseModel] | None = None,
              response: type[BaseModel] | None = None, status: int = 200, public: bool = False,
              query: type[BaseModel] | None = None, request_media: dict | None = None, tags: list[str] | None = None):
        def register(view: Callable) -> Callable:
            self.blueprint.add_url_rule(rule, endpoint=view.__name__, view_func=view, methods=[method])
            self.operations.append({"method": method.lower(), "rule": rule, "summary": summary, "body": body,
                                    "response": response, "status": status, "public": public, "query": query,
                                    "request_media": request_media, "tags": tags or [self.name],
                                    "operation_id": f"{self.name}.{view.__name__}"})
            return view

        return register

    def install(self, app: Flask) -> None:
        app.register_blueprint(self.blueprint)
        app.extensions["footprint.apis"].append(self)


def _schema_ref(model: type[BaseModel], components: dict) -> dict:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def openapi_document(app: Flask) -> dict:
    paths: dict[str, dict] = {}
    components: dict[str, dict] = {}
    problem_ref = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for api in app.extensions["footprint.apis"]:
        for op in api.operations:
            path = re.sub(r"<(?:[a-z]+:)?([a-zA-Z_]+)>", r"{\1}", op["rule"])
            operation: dict[str, Any] = {"operationId": op["operation_id"], "summary": op["summary"], "tags": op["tags"],
                                         "responses": {"default": {"description": "problem", "content": problem_ref}}}
            params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in re.findall(r"{([a-zA-Z_]+)}", path)]
            if op["query"] is not None:
                for name, field in op["query"].model_fields.items():
                    params.append({"name": name, "in": "query", "required": field.is_required(),
                                   "schema": {"type": "string"}, "description": field.description or ""})
            if params:
                operation["parameters"] = params
            if op["body"] is not None:
                operation["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": _schema_ref(op["body"], components)}}}
            elif op["request_media"]:
                operation["requestBody"] = {"required": True, "content": op["request_media"]}
            ok: dict[str, Any] = {"description": "OK"}
            if op["response"] is not None:
                ok["content"] = {"application/json": {"schema": _schema_ref(op["response"], components)}}
            operation["responses"][str(op["status"])] = ok
            if not op["public"]:
                operation["security"] = [{"bearer": []}]
            paths.setdefault(path, {})[op["method"]] = operation
    components["Problem"] = {
        "type": "object", "required": ["type", "title", "status", "code", "message"],
        "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                       "code": {"type": "string"}, "detail": {"type": "string"}, "request_id": {"type": "string"},
                       "message": {"type": "object", "properties": {"zh-TW": {"type": "string"}, "en": {"type": "string"}}},
                       "errors": {"type": "array", "items": {"type": "object"}}}}
    return {"openapi": "3.1.0", "info": {"title": f"Footprint {app.extensions['footprint.service']}", "version": "1"},
            "paths": paths, "components": {"schemas": components, "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}}}
