"""The discovery endpoints of RFC 7644 §4: ServiceProviderConfig, ResourceTypes, Schemas.

Everything published is derived from the scim2-models classes the server validates with, so what
the broker announces is what it accepts.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    EnterpriseUser,
    ETag,
    Filter,
    Group,
    ListResponse,
    Meta,
    NotFoundException,
    Patch,
    ResourceType,
    Schema,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    User,
)

from broker.lifecycle.scim.wire import ScimRequest, ScimResult, UserResource, dump, search_parameters


@cache
def provider() -> ScimProvider:
    return ScimProvider(models=[User, EnterpriseUser, Group],
                        resource_types=[ResourceType.from_resource(UserResource), ResourceType.from_resource(Group)])


def service_provider_config(request: ScimRequest) -> ScimResult:
    config = ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=request.max_page_size),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=False),
        authentication_schemes=[AuthenticationScheme(
            type="oauthbearertoken", name="Bearer token", primary=True,
            description="A per-IdP bearer token from the broker's configuration (scim.tokens)")],
        meta=Meta(resource_type="ServiceProviderConfig", location=f"{request.base_url}/ServiceProviderConfig"))
    return ScimResult(200, dump(config, Context.RESOURCE_QUERY_RESPONSE))


def resource_types(request: ScimRequest, params: list[tuple[str, str]]) -> ScimResult:
    search_parameters(ResourceType, params, request.max_page_size, allow_paging=False)
    found = [_located(t, request) for t in provider().resource_types]
    return _listed(ResourceType, found)


def resource_type(request: ScimRequest, name: str) -> ScimResult:
    for candidate in provider().resource_types:
        if str(candidate.id) == name:
            return ScimResult(200, dump(_located(candidate, request), Context.RESOURCE_QUERY_RESPONSE))
    raise NotFoundException(detail=f"no resource type {name!r}")


def schemas(request: ScimRequest, params: list[tuple[str, str]]) -> ScimResult:
    search_parameters(Schema, params, request.max_page_size, allow_paging=False)
    return _listed(Schema, [_schema(s, request) for s in provider().schemas])


def schema(request: ScimRequest, urn: str) -> ScimResult:
    for candidate in provider().schemas:
        if str(candidate.id).lower() == urn.lower():
            return ScimResult(200, dump(_schema(candidate, request), Context.RESOURCE_QUERY_RESPONSE))
    raise NotFoundException(detail=f"no schema {urn!r}")


def _located(resource_type: ResourceType, request: ScimRequest) -> ResourceType:
    meta = Meta(resource_type="ResourceType", location=f"{request.base_url}/ResourceTypes/{resource_type.id}")
    return resource_type.model_copy(update={"meta": meta})


def _schema(found: Schema, request: ScimRequest) -> Schema:
    return found.model_copy(update={"meta": Meta(resource_type="Schema",
                                                 location=f"{request.base_url}/Schemas/{found.id}")})


def _listed(model: type[Any], resources: list[Any]) -> ScimResult:
    count = len(resources)
    listed = ListResponse[model]  # type: ignore[valid-type]  # a class chosen at run time, not a literal type
    listing = listed(total_results=count, start_index=1, items_per_page=count, resources=resources)
    return ScimResult(200, dump(listing, Context.RESOURCE_QUERY_RESPONSE))
