"""Identity's HTTP API (behind the gateway at /api/v1/…)."""
from __future__ import annotations

from typing import Literal

from flask import request
from pydantic import BaseModel, ConfigDict, Field

from shared.auth import current_principal, require_auth
from shared.events import Role, StudentStatus
from shared.http import Api, json_response, read_json, read_query
from shared.spreadsheets import spool_upload

from . import domain, imports
from .models import School, User

MAX_IMPORT_BYTES = 20 * 1024 * 1024


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LoginIn(Body):
    school: str = Field(min_length=3, max_length=6, description="6-digit school code, or a city code for city admins")
    username: str = Field(min_length=1, max_length=40)
    password: str = Field(min_length=1, max_length=256)


class TokensOut(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str
    must_change_password: bool


class RefreshIn(Body):
    refresh_token: str = Field(min_length=10, max_length=200)


class LogoutIn(Body):
    refresh_token: str | None = Field(default=None, max_length=200)


class PasswordChangeIn(Body):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class SchoolOut(BaseModel):
    code: str
    name: str
    city: str
    active: bool


class SchoolIn(Body):
    code: str = Field(pattern=r"^[0-9]{6}$")
    name: str = Field(min_length=1, max_length=100)


class SchoolPatch(Body):
    name: str = Field(min_length=1, max_length=100)


class StudentOut(BaseModel):
    student_no: str
    class_name: str
    grade: int
    status: StudentStatus
    national_id: str = Field(description="masked; the full number is never returned")


class UserOut(BaseModel):
    id: str
    school: str | None
    city: str
    username: str
    display_name: str
    roles: list[str]
    homeroom_class: str | None
    active: bool
    must_change_password: bool
    receipts_only: bool
    student: StudentOut | None


class UserList(BaseModel):
    total: int
    items: list[UserOut]


class MeOut(BaseModel):
    user: UserOut
    school: SchoolOut | None
    city: dict


class StudentIn(Body):
    student_no: str = Field(pattern=r"^[A-Za-z0-9]{1,20}$")
    class_name: str = Field(min_length=1, max_length=20)
    grade: int = Field(ge=10, le=12)
    status: StudentStatus = "enrolled"
    national_id: str = Field(min_length=10, max_length=10)


class UserIn(Body):
    username: str = Field(pattern=r"^[A-Za-z0-9._-]{2,40}$")
    display_name: str = Field(min_length=1, max_length=60)
    roles: list[Role] = Field(min_length=1)
    password: str = Field(min_length=1, max_length=256)
    homeroom_class: str | None = Field(default=None, max_length=20)
    student: StudentIn | None = None


class StudentPatch(Body):
    class_name: str | None = Field(default=None, min_length=1, max_length=20)
    grade: int | None = Field(default=None, ge=10, le=12)
    status: StudentStatus | None = None
    national_id: str | None = Field(default=None, min_length=10, max_length=10)


class UserPatch(Body):
    display_name: str | None = Field(default=None, min_length=1, max_length=60)
    roles: list[Role] | None = Field(default=None, min_length=1)
    homeroom_class: str | None = Field(default=None, max_length=20)
    student: StudentPatch | None = None


class DeactivateIn(Body):
    reason: str = Field(min_length=1, max_length=200)


class PasswordResetOut(BaseModel):
    user_id: str
    temporary_password: str
    must_change_password: bool


class UserQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    class_name: str | None = Field(default=None, max_length=20)
    q: str | None = Field(default=None, max_length=40)
    offset: int = Field(default=0, ge=0, le=1_000_000)
    limit: int = Field(default=50, ge=1, le=500)


class LookupIn(Body):
    national_id: str = Field(min_length=10, max_length=10)


class ImportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dry_run: bool = False


class ImportReport(BaseModel):
    kind: Literal["students", "teachers"]
    school: str
    dry_run: bool
    rows: int
    created: int
    updated: int
    unchanged: int
    rejected: int
    errors: list[dict]


def user_out(user: User) -> dict:
    student = None
    if user.student is not None:
        student = {"student_no": user.student.student_no, "class_name": user.student.class_name, "grade": user.student.grade,
                   "status": user.student.status, "national_id": user.student.national_id_masked}
    return UserOut(id=user.id, school=user.school, city=user.city, username=user.username, display_name=user.display_name,
                   roles=list(user.roles), homeroom_class=user.homeroom_class, active=user.active,
                   must_change_password=user.must_change_password, receipts_only=user.receipts_only,
                   student=student).model_dump(mode="json")


def school_out(school: School) -> dict:
    return {"code": school.code, "name": school.name, "city": school.city, "active": school.active}


def install(app, runtime) -> None:
    identity: domain.Identity = runtime.state["identity"]
    api = Api("identity", "Identity")

    # -- sign-in --------------------------------------------------------------------------------------
    @api.route("POST", "/api/v1/auth/login", summary="Sign in (登入) with school code, username and password",
               body=LoginIn, response=TokensOut, public=True, tags=["auth"])
    def login():
        body = read_json(LoginIn)
        return json_response(domain.login(identity, body.school, body.username, body.password))

    @api.route("POST", "/api/v1/auth/refresh", summary="Exchange a refresh token (rotated) for new tokens",
               body=RefreshIn, response=TokensOut, public=True, tags=["auth"])
    def refresh():
        return json_response(domain.refresh(identity, read_json(RefreshIn).refresh_token))

    @api.route("POST", "/api/v1/auth/logout", summary="Sign out: revoke the refresh token (or all of the user's)",
               body=LogoutIn, status=204, tags=["auth"])
    @require_auth(allow_password_change=True, allow_receipts_only=True)
    def logout():
        domain.logout(current_principal(), read_json(LogoutIn).refresh_token)
        return "", 204

    @api.route("POST", "/api/v1/auth/password", summary="Change one's own password (required at first sign-in)",
               body=PasswordChangeIn, status=204, tags=["auth"])
    @require_auth(allow_password_change=True, allow_receipts_only=True)
    def change_password():
        body = read_json(PasswordChangeIn)
        domain.change_password(current_principal(), body.current_password, body.new_password)
        return "", 204

    @api.route("GET", "/api/v1/auth/jwks", summary="Public keys that verify access tokens (JWKS)", public=True, tags=["auth"])
    def jwks():
        return json_response(identity.keys.jwks(), headers={"Cache-Control": "public, max-age=300"})

    @api.route("GET", "/api/v1/me", summary="The caller: user, school and roles", response=MeOut, tags=["auth"])
    @require_auth(allow_password_change=True, allow_receipts_only=True)
    def me():
        user, school, city = domain.me(current_principal())
        return json_response({"user": user_out(user), "school": school_out(school) if school else None,
                              "city": {"code": user.city, "name": city.name if city else user.city}})

    # -- schools --------------------------------------------------------------------------------------
    @api.route("GET", "/api/v1/schools", summary="Schools the caller may see", tags=["schools"])
    @require_auth()
    def schools():
        return json_response({"items": [school_out(s) for s in domain.list_schools(current_principal())]})

    @api.route("POST", "/api/v1/schools", summary="Create a school (city admin)", body=SchoolIn, response=SchoolOut,
               status=201, tags=["schools"])
    @require_auth("city_admin")
    def create_school():
        body = read_json(SchoolIn)
        return json_response(school_out(domain.create_school(current_principal(), body.code, body.name)), 201)

    @api.route("GET", "/api/v1/schools/<code>", summary="One school", response=SchoolOut, tags=["schools"])
    @require_auth()
    def get_school(code):
        return json_response(school_out(domain.visible_school(current_principal(), code)))

    @api.route("PATCH", "/api/v1/schools/<code>", summary="Rename a school", body=SchoolPatch, response=SchoolOut,
               tags=["schools"])
    @require_auth("city_admin", "school_admin")
    def patch_school(code):
        return json_response(school_out(domain.update_school(current_principal(), code, read_json(SchoolPatch).name)))

    @api.route("POST", "/api/v1/schools/<code>/deactivate", summary="Deactivate a school (city admin)",
               response=SchoolOut, tags=["schools"])
    @require_auth("city_admin")
    def deactivate_school(code):
        return json_response(school_out(domain.deactivate_school(current_principal(), code)))

    # -- users ----------------------------------------------------------------------------------------
    @api.route("GET", "/api/v1/schools/<code>/users", summary="Users of a school (staff)", query=UserQuery,
               response=UserList, tags=["users"])
    @require_auth()
    def list_users(code):
        query = read_query(UserQuery)
        total, users = domain.list_users(current_principal(), code, role=query.role, class_name=query.class_name,
                                         query=query.q, offset=query.offset, limit=query.limit)
        return json_response({"total": total, "items": [user_out(u) for u in users]})

    @api.route("POST", "/api/v1/schools/<code>/users", summary="Create a user", body=UserIn, response=UserOut,
               status=201, tags=["users"])
    @require_auth("school_admin", "registrar", "city_admin")
    def create_user(code):
        body = read_json(UserIn)
        user = domain.create_user(identity, current_principal(), code, username=body.username,
                                  display_name=body.display_name, roles=list(body.roles), password=body.password,
                                  homeroom_class=body.homeroom_class,
                                  student=body.student.model_dump() if body.student else None)
        return json_response(user_out(user), 201)

    @api.route("POST", "/api/v1/schools/<code>/students/lookup",
               summary="Find a student by national ID (keyed hash; the number is never stored in clear)",
               body=LookupIn, response=UserOut, tags=["users"])
    @require_auth()
    def lookup_student(code):
        return json_response(user_out(domain.find_student(identity, current_principal(), code,
                                                           read_json(LookupIn).national_id)))

    @api.route("GET", "/api/v1/users/<user_id>", summary="One user", response=UserOut, tags=["users"])
    @require_auth()
    def get_user(user_id):
        return json_response(user_out(domain.visible_user(current_principal(), user_id)))

    @api.route("PATCH", "/api/v1/users/<user_id>", summary="Change a user (status changes of students included)",
               body=UserPatch, response=UserOut, tags=["users"])
    @require_auth("school_admin", "registrar", "city_admin")
    def patch_user(user_id):
        body = read_json(UserPatch)
        return json_response(user_out(domain.update_user(identity, current_principal(), user_id,
                                                         body.model_dump(exclude_unset=True))))

    @api.route("POST", "/api/v1/users/<user_id>/deactivate", summary="Deactivate a user", body=DeactivateIn,
               response=UserOut, tags=["users"])
    @require_auth("school_admin", "registrar", "city_admin")
    def deactivate_user(user_id):
        return json_response(user_out(domain.deactivate_user(current_principal(), user_id, read_json(DeactivateIn).reason)))

    @api.route("POST", "/api/v1/users/<user_id>/password-reset",
               summary="Reset a password: a one-time password the user must change", response=PasswordResetOut,
               tags=["users"])
    @require_auth("school_admin", "registrar", "city_admin")
    def reset_password(user_id):
        user, temporary = domain.reset_password(current_principal(), user_id)
        return json_response({"user_id": user.id, "temporary_password": temporary, "must_change_password": True})

    # -- bulk import ----------------------------------------------------------------------------------
    @api.route("POST", "/api/v1/schools/<code>/imports/<kind>",
               summary="Import students or teachers from CSV/XLSX (row-level report; idempotent)", query=ImportQuery,
               response=ImportReport, tags=["imports"], request_media={
                   "text/csv": {"schema": {"type": "string", "format": "binary"}},
                   "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                       "schema": {"type": "string", "format": "binary"}}})
    @require_auth("school_admin", "registrar", "city_admin")
    def import_users(code, kind):
        query = read_query(ImportQuery)
        spool, _size = spool_upload(request.stream, request.content_length, MAX_IMPORT_BYTES)
        with spool:
            report = imports.import_users(identity, current_principal(), code, kind, spool, dry_run=query.dry_run)
        return json_response(report)

    api.install(app)


