"""SCIM 2.0 at ``/scim/v2`` (RFC 7644): a thin adapter over ``broker.lifecycle.scim``.

Each route authenticates the bearer token, reads the body, runs one core operation in one database
transaction on a worker thread, and renders ``application/scim+json``. A ``SCIMException`` becomes the
RFC 7644 §3.12 error; the transaction has rolled back by then, so a refused request changes nothing
but the audit event that records the refusal of a change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from scim2_models import Error, SCIMException

from broker.lifecycle import scim
from broker.storage.models import utcnow
from broker.web.deps import State
from broker.web.headers import NO_STORE
from broker.web.state import BrokerState


class ScimResponse(JSONResponse):
    """What the OpenAPI document says the routes answer: a JSON object as ``application/scim+json``."""

    media_type = scim.MEDIA_TYPE  # RFC 7644 §8.1


router = APIRouter(prefix="/scim/v2", tags=["SCIM 2.0"], default_response_class=ScimResponse)
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CHALLENGE = 'Bearer realm="mcp-auth-broker SCIM"'

_ERROR_CONTENT = {scim.MEDIA_TYPE: {"schema": {"type": "object", "properties": {
    "schemas": {"type": "array", "items": {"type": "string"},
                "example": ["urn:ietf:params:scim:api:messages:2.0:Error"]},
    "status": {"type": "string", "example": "400"},
    "scimType": {"type": "string", "example": "invalidValue"},
    "detail": {"type": "string"}}}}}
_BODY = {"required": True, "content": {media: {"schema": {"type": "object"}}
                                       for media in (scim.MEDIA_TYPE, "application/json")}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _ERROR_CONTENT}


READ_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("invalidValue (a query parameter), invalidFilter (unsupported or malformed filter)"),
    401: _error("Missing or unknown bearer token (WWW-Authenticate: Bearer)"),
    404: _error("No such resource for this IdP"),
    429: _error("Rate limited per bearer credential or address ([rate_limits]); Retry-After says when to retry"),
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **READ_ERRORS,
    400: _error("invalidSyntax (malformed JSON, not UTF-8, wrong schemas, unknown attribute), invalidValue, "
                "invalidPath, mutability, noTarget"),
    409: _error("uniqueness: userName, externalId or displayName already in use"),
    413: {"description": "Request body too large"},
    415: _error("The body is not application/scim+json or application/json"),
}
_LIST_PARAMETERS = [{"name": name, "in": "query", "required": False, "schema": {"type": kind},
                     "description": text} for name, kind, text in (
    ("filter", "string", '`userName eq "..."`, `externalId eq "..."` (Users); `displayName eq "..."`, '
                         '`externalId eq "..."`, `members eq "..."` (Groups); `id eq "..."`; joined by `and`'),
    ("startIndex", "integer", "1-based index of the first result"),
    ("count", "integer", "page size, capped at scim.max_page_size"),
    ("attributes", "string", "comma-separated attributes to return"),
    ("excludedAttributes", "string", "comma-separated attributes to leave out"))]
_ONE_PARAMETERS = _LIST_PARAMETERS[3:]


async def _serve(request: Request, state: BrokerState, operation: Callable[..., scim.ScimResult], *args: Any,
                 body: bool = False, query: bool = False, database: bool = True) -> Response:
    client = None
    try:
        client = scim.authenticate(state.settings.scim.tokens, request.headers.get("authorization"))
        inputs = list(args)
        if body:
            inputs.append(scim.read_json(await request.body(), request.headers.get("content-type")))
        if query:
            inputs.append(list(request.query_params.multi_items()))
        context = scim.ScimRequest(client, state.settings.issuer.rstrip("/") + router.prefix, utcnow(),
                                   state.settings.scim.max_page_size)
        result = (await state.database.cold(operation, context, *inputs) if database
                  else operation(context, *inputs))
    except SCIMException as exc:
        return await _refused(request, state, client, exc)
    return _render(result.status, result.body, {"location": result.location} if result.location else {})


async def _refused(request: Request, state: BrokerState, client: scim.ScimClient | None,
                   exc: SCIMException) -> Response:
    status, body = scim.error_body(exc)
    if client is not None and request.method in MUTATING:
        await state.database.cold(scim.record_rejection, client, request.method, request.url.path, status,
                                  body.get("scimType"))
    return _render(status, body, {"www-authenticate": CHALLENGE} if status == 401 else {})


def _render(status: int, body: dict[str, Any] | None, headers: dict[str, str]) -> Response:
    content = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
    return Response(content, status_code=status, media_type=None if body is None else scim.MEDIA_TYPE,
                    headers={**NO_STORE, **headers})


# ------------------------------------------------------------------ discovery (RFC 7644 §4)


@router.get("/ServiceProviderConfig", summary="SCIM service provider configuration", responses=READ_ERRORS)
async def service_provider_config(request: Request, state: State) -> Response:
    return await _serve(request, state, scim.discovery.service_provider_config, database=False)


@router.get("/ResourceTypes", summary="SCIM resource types (User, Group)", responses=READ_ERRORS,
            openapi_extra={"parameters": _ONE_PARAMETERS})
async def resource_types(request: Request, state: State) -> Response:
    return await _serve(request, state, scim.discovery.resource_types, query=True, database=False)


@router.get("/ResourceTypes/{name}", summary="One SCIM resource type", responses=READ_ERRORS)
async def resource_type(name: str, request: Request, state: State) -> Response:
    return await _serve(request, state, scim.discovery.resource_type, name, database=False)


@router.get("/Schemas", summary="SCIM schemas (User, Enterprise User, Group)", responses=READ_ERRORS,
            openapi_extra={"parameters": _ONE_PARAMETERS})
async def schemas(request: Request, state: State) -> Response:
    return await _serve(request, state, scim.discovery.schemas, query=True, database=False)


@router.get("/Schemas/{urn}", summary="One SCIM schema", responses=READ_ERRORS)
async def schema(urn: str, request: Request, state: State) -> Response:
    return await _serve(request, state, scim.discovery.schema, urn, database=False)


# ------------------------------------------------------------------ Users


@router.post("/Users", summary="Provision a user (linked to the IdP login whose subject is externalId)",
             status_code=201, responses=WRITE_ERRORS, openapi_extra={"requestBody": _BODY})
async def create_user(request: Request, state: State) -> Response:
    return await _serve(request, state, scim.users.create, body=True)


@router.get("/Users", summary="List or filter provisioned users", responses=READ_ERRORS,
            openapi_extra={"parameters": _LIST_PARAMETERS})
async def list_users(request: Request, state: State) -> Response:
    return await _serve(request, state, scim.users.search, query=True)


@router.get("/Users/{user_id}", summary="A provisioned user", responses=READ_ERRORS,
            openapi_extra={"parameters": _ONE_PARAMETERS})
async def get_user(user_id: str, request: Request, state: State) -> Response:
    return await _serve(request, state, scim.users.get, user_id, query=True)


@router.put("/Users/{user_id}", summary="Replace a user (active=false offboards at once)",
            responses=WRITE_ERRORS, openapi_extra={"requestBody": _BODY})
async def replace_user(user_id: str, request: Request, state: State) -> Response:
    return await _serve(request, state, scim.users.replace, user_id, body=True)


@router.patch("/Users/{user_id}", summary="Patch a user (Okta and Entra shapes; active=false offboards at once)",
              responses=WRITE_ERRORS, openapi_extra={"requestBody": _BODY})
async def patch_user(user_id: str, request: Request, state: State) -> Response:
    return await _serve(request, state, scim.users.patch, user_id, body=True)


@router.delete("/Users/{user_id}", summary="Delete a user: offboards them; the resource is gone, the user kept",
               status_code=204, response_class=Response, responses=WRITE_ERRORS)
async def delete_user(user_id: str, request: Request, state: State) -> Response:
    return await _serve(request, state, scim.users.delete, user_id)


# ------------------------------------------------------------------ Groups


@router.post("/Groups", summary="Create a group (source scim:<idp>; its name is displayName)", status_code=201,
             responses=WRITE_ERRORS, openapi_extra={"requestBody": _BODY})
async def create_group(request: Request, state: State) -> Response:
    return await _serve(request, state, scim.groups.create, body=True)


@router.get("/Groups", summary="List or filter groups", responses=READ_ERRORS,
            openapi_extra={"parameters": _LIST_PARAMETERS})
async def list_groups(request: Request, state: State) -> Response:
    return await _serve(request, state, scim.groups.search, query=True)


@router.get("/Groups/{group_id}", summary="A group and its members", responses=READ_ERRORS,
            openapi_extra={"parameters": _ONE_PARAMETERS})
async def get_group(group_id: str, request: Request, state: State) -> Response:
    return await _serve(request, state, scim.groups.get, group_id, query=True)


@router.put("/Groups/{group_id}", summary="Replace a group and its member list", responses=WRITE_ERRORS,
            openapi_extra={"requestBody": _BODY})
async def replace_group(group_id: str, request: Request, state: State) -> Response:
    return await _serve(request, state, scim.groups.replace, group_id, body=True)


@router.patch("/Groups/{group_id}", summary="Patch a group: add/remove/replace members, rename",
              responses=WRITE_ERRORS, openapi_extra={"requestBody": _BODY})
async def patch_group(group_id: str, request: Request, state: State) -> Response:
    return await _serve(request, state, scim.groups.patch, group_id, body=True)


@router.delete("/Groups/{group_id}", summary="Delete a group and its memberships", status_code=204,
               response_class=Response, responses=WRITE_ERRORS)
async def delete_group(group_id: str, request: Request, state: State) -> Response:
    return await _serve(request, state, scim.groups.delete, group_id)


# ------------------------------------------------------------------ everything else under /scim/v2

_KNOWN = re.compile(r"(ServiceProviderConfig|(ResourceTypes|Schemas|Users|Groups)(/[^/]+)?)")
_NOT_IMPLEMENTED = re.compile(r"(Bulk|Me|((Users|Groups)/)?\.search)", re.IGNORECASE)


def _unrouted(context: scim.ScimRequest, path: str) -> scim.ScimResult:
    if _NOT_IMPLEMENTED.fullmatch(path):
        raise SCIMException.from_error(Error(status=501, detail=f"/{path} is not supported"))
    if _KNOWN.fullmatch(path):
        raise SCIMException.from_error(Error(status=405, detail="method not allowed on this endpoint"))
    raise SCIMException.from_error(Error(status=404, detail="no such endpoint"))


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def unrouted(path: str, request: Request, state: State) -> Response:
    return await _serve(request, state, _unrouted, path, database=False)
