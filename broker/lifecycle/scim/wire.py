"""SCIM on the wire: bodies in, resources and errors out, through scim2-models.

The protocol errors are scim2-models' ``SCIMException`` classes (each carries its HTTP status and
``scimType``); ``error_of`` turns any of them into the RFC 7644 §3.12 ``Error`` message. Pydantic's
validation errors never leave this package raw: ``validate`` maps them to ``invalidSyntax`` (the
message does not follow the schema) or ``invalidValue`` (a value does not fit its attribute).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError
from scim2_models import (
    URN,
    Context,
    EnterpriseUser,
    Error,
    InvalidSyntaxException,
    InvalidValueException,
    PatchOp,
    Resource,
    ResponseParameters,
    SCIMException,
    ScimPolicy,
    SearchRequest,
    User,
)
from scim2_models import BaseModel as ScimModel

log = logging.getLogger("broker.scim")

MEDIA_TYPE = "application/scim+json"
ACCEPTED_MEDIA_TYPES = frozenset({MEDIA_TYPE, "application/json"})
MAX_DETAIL = 300
# Far beyond any real page or offset, small enough for every database's OFFSET/LIMIT.
MAX_INTEGER = 2**31 - 1
_RESOURCE_ID = re.compile(r"[0-9A-Za-z-]{1,36}")

UserResource = User[EnterpriseUser]

# Unknown attributes are refused (the SCIM interoperability profile, §5.3): a mapping the broker would
# silently drop shows up as an error in the IdP's provisioning log instead. Entra's two deviations from
# RFC 7644 §3.5.2 are accepted because they are unambiguous: a ``remove`` whose ``value`` names the
# members to remove, and an ``add``/``replace`` on ``emails[type eq "work"].value`` when there is no
# work email yet (the entry is created).
POLICY = ScimPolicy(remove_value_as_filter=ScimPolicy.RemoveValue.apply,
                    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create)

M = TypeVar("M", bound=ScimModel)


class UnsupportedMediaType(SCIMException):
    """The body is neither ``application/scim+json`` nor ``application/json`` (no scimType)."""

    status = 415
    _default_detail = f"the body must be {MEDIA_TYPE} (or application/json)"


@dataclass(frozen=True)
class ScimClient:
    """An authenticated SCIM client: the IdP whose users and groups it provisions."""

    idp_id: str

    @property
    def actor(self) -> str:
        return f"scim:{self.idp_id}"


@dataclass(frozen=True)
class ScimRequest:
    """What every operation needs besides its input: who calls, where the server lives, when."""

    client: ScimClient
    base_url: str  # <issuer>/scim/v2
    now: dt.datetime
    max_page_size: int

    def location(self, endpoint: str, resource_id: str) -> str:
        return f"{self.base_url}/{endpoint}/{resource_id}"


@dataclass(frozen=True)
class ScimResult:
    """An operation's answer: status, body (``None`` for 204) and ``Location`` for a created resource."""

    status: int
    body: dict[str, Any] | None = None
    location: str | None = None


def fold(value: str) -> str:
    """The form a case-insensitive SCIM string compares in: NFC, then lower case (scim2-models' default key)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).lower())


# ------------------------------------------------------------------ input


def read_json(raw: bytes, content_type: str | None) -> dict[str, Any]:
    """The body as a JSON object; ``invalidSyntax`` for anything else (RFC 7644 §3.12)."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type not in ACCEPTED_MEDIA_TYPES:
        raise UnsupportedMediaType()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSyntaxException(detail="the body is not UTF-8") from None
    try:
        payload = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise InvalidSyntaxException(detail="the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise InvalidSyntaxException(detail="the body must be a JSON object")
    refuse_unstorable(payload)
    return payload


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def refuse_unstorable(value: Any) -> None:
    """Refuse strings no database stores: NUL (PostgreSQL text) and lone surrogates (not UTF-8)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item or not _encodable(item):
                raise InvalidValueException(detail="a string holds NUL or an unpaired surrogate")
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def require_schema(payload: Mapping[str, Any], urn: URN | str) -> None:
    """RFC 7643 §3: ``schemas`` is required and names the message's or resource's schema."""
    schemas = payload.get("schemas")
    if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas):
        raise InvalidSyntaxException(detail="'schemas' is required: a list of schema URNs")
    if str(urn).lower() not in {s.lower() for s in schemas}:
        raise InvalidSyntaxException(detail=f"'schemas' must contain {urn}")


def without_attributeless_schemas(payload: dict[str, Any], urns: Sequence[str]) -> dict[str, Any]:
    """``payload`` without those of ``urns`` in its ``schemas`` that carry no attributes: a vendor names them
    out of habit, and an extension the broker cannot store is refused only when it holds something."""
    schemas = payload.get("schemas")
    if not isinstance(schemas, list):
        return payload
    drop = {urn.lower() for urn in urns} - {key.lower() for key in payload}
    return {**payload, "schemas": [s for s in schemas if not (isinstance(s, str) and s.lower() in drop)]}


def validate(model: type[M], payload: Any, context: Context) -> M:
    """``payload`` as ``model`` in a request ``context``, every failure a SCIM error."""
    try:
        return model.model_validate(payload, scim_ctx=context, scim_policy=POLICY)
    except ValidationError as exc:
        raise as_scim_error(exc) from None


def as_scim_error(exc: ValidationError) -> SCIMException:
    errors = Error.from_validation_errors(exc)
    first = errors[0] if errors else Error(status=400, scim_type="invalidValue", detail="invalid value")
    if first.status is None or not 400 <= first.status < 500:
        first = Error(status=400, scim_type=first.scim_type or "invalidValue", detail=first.detail)
    return SCIMException.from_error(_short(first))


def text_value(value: str | None, attribute: str, max_length: int, *, why: str = "") -> str:
    """A required string attribute, present, not blank and short enough to store."""
    if value is None or not value.strip():
        raise InvalidValueException(detail=f"{attribute} is required" + (f": {why}" if why else ""))
    if len(value) > max_length:
        raise InvalidValueException(detail=f"{attribute} is longer than {max_length} characters")
    return value


def resource_id(text: str) -> bool:
    """Whether ``text`` can be one of the broker's resource ids (anything else is 404 without a query)."""
    return _RESOURCE_ID.fullmatch(text) is not None


def apply_patch(operations: PatchOp[Any], resource: Resource[Any]) -> None:
    """Apply a validated PATCH to ``resource`` in place (all operations or none, RFC 7644 §3.5.2)."""
    try:
        operations.patch(resource, scim_policy=POLICY)
    except ValidationError as exc:
        raise as_scim_error(exc) from None
    except (ValueError, TypeError, KeyError) as exc:  # anything scim2-models did not classify: the input's fault
        log.warning("PATCH refused: %s: %s", type(exc).__name__, exc)
        raise InvalidValueException(detail="the operations do not apply to this resource") from None


def apply_replacement(wanted: Resource[Any], original: Resource[Any]) -> None:
    """RFC 7644 §3.5.1 on ``wanted``: read-only values kept from ``original``, immutable ones compared."""
    try:
        wanted.replace(original)
    except ValidationError as exc:
        raise as_scim_error(exc) from None


def search_parameters(model: type[Any], params: Sequence[tuple[str, str]], max_page_size: int,
                      *, allow_paging: bool = True) -> SearchRequest[Any]:
    """RFC 7644 §3.4.2 query parameters (filter, startIndex, count, attributes, excludedAttributes)."""
    names = {"filter": "filter", "startindex": "startIndex", "count": "count", "attributes": "attributes",
             "excludedattributes": "excludedAttributes", "sortby": "sortBy", "sortorder": "sortOrder"}
    raw: dict[str, str] = {}
    for name, value in params:
        key = names.get(name.lower())
        if key is None:
            continue  # RFC 7644 leaves other parameters to the service provider: ignored
        if key in raw:
            raise InvalidValueException(detail=f"the query parameter {key!r} is given twice")
        refuse_unstorable(value)
        raw[key] = value
    if not allow_paging and {"filter", "startIndex", "count", "sortBy", "sortOrder"} & set(raw):
        raise InvalidValueException(detail="this endpoint takes only attributes and excludedAttributes")
    for key in ("startIndex", "count"):
        if key in raw and not _small_integer(raw[key]):
            raise InvalidValueException(detail=f"{key} must be an integer between 0 and {MAX_INTEGER}")
    raw.pop("sortBy", None)  # ServiceProviderConfig says sort is not supported: results stay in creation order
    raw.pop("sortOrder", None)
    shape = SearchRequest[model]  # type: ignore[valid-type]  # User or Group, chosen at run time
    search = validate(shape, raw, Context.SEARCH_REQUEST)
    if search.count is not None and search.count > max_page_size:
        search.count = max_page_size  # RFC 7644 §3.4.2.4: never more than the server's page size
    return search


def wants(parameters: ResponseParameters[Any], attribute: str) -> bool:
    """Whether a response shaped by ``attributes``/``excludedAttributes`` carries ``attribute`` (RFC 7644 §3.9)."""
    def names(paths: list[Any] | None) -> set[str]:
        return {str(p).lower().rsplit(":", 1)[-1].split(".")[0] for p in paths or []}

    if attribute.lower() in names(parameters.excluded_attributes):
        return False
    return not parameters.attributes or attribute.lower() in names(parameters.attributes)


def _small_integer(text: str) -> bool:
    stripped = text.strip()
    digits = stripped[1:] if stripped[:1] in "+-" else stripped
    return digits.isascii() and digits.isdigit() and len(digits) <= 10 and abs(int(stripped)) <= MAX_INTEGER


# ------------------------------------------------------------------ output


def dump(resource: ScimModel, context: Context, parameters: ResponseParameters[Any] | None = None) -> dict[str, Any]:
    return resource.model_dump(scim_ctx=context, response_parameters=parameters, scim_policy=POLICY)


def error_of(exc: SCIMException) -> Error:
    """The RFC 7644 §3.12 error for a protocol exception, with a short, single-line detail."""
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if isinstance(cause, ValidationError):  # a re-validation inside scim2-models (PATCH): its text is long
        inner = as_scim_error(cause).to_error()
        return _short(Error(status=exc.status, scim_type=exc.scim_type or inner.scim_type, detail=inner.detail))
    return _short(exc.to_error())


def error_body(exc: SCIMException) -> tuple[int, dict[str, Any]]:
    error = error_of(exc)
    return error.status or 400, error.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)


def _short(error: Error) -> Error:
    detail = " ".join((error.detail or "").split())
    if len(detail) > MAX_DETAIL:
        detail = detail[:MAX_DETAIL - 1] + "…"
    return Error(status=error.status, scim_type=error.scim_type, detail=detail or None)
