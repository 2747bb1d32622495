"""The access matrix: who can reach which MCP server with which scopes, and the rules that decide it
(``broker.registry.policies.matrix``, as ``broker policy matrix`` and the console's Access page)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from broker.registry import policies
from broker.registry import servers as registry
from broker.web.admin_api.common import BAD_BODY, ColdRoute, Reader, errors, not_found
from broker.web.deps import DbSession, State
from broker.web.downloads import csv_response

router = APIRouter(route_class=ColdRoute)  # each route's session on its own thread


class CellOut(BaseModel):
    server: str
    state: str = Field(description="allowed, denied (a deny rule matched), none (no rule allows) or offboarded")
    scopes: list[str] = Field(description="granted (empty: no access)")
    allowed_by: list[str] = Field(description="ids of the allow rules that matched")
    denied_by: list[str] = Field(description="ids of the deny rules that matched")
    withheld: list[str] = Field(description="scopes the allow rules give but deny rules take away")
    conditional: list[str] = Field(description="matched rules with conditions (clients, acr/amr, validity) taken "
                                   "as met: the most this subject could get")


class RowOut(BaseModel):
    kind: str = Field(description="everyone, group, claim, idp or user")
    key: str = Field(description="group name, `name = value`, IdP id or user id; empty for everyone")
    label: str
    offboarded: bool
    cells: list[CellOut] = Field(description="one per server, in the order of `servers`")


class MatrixOut(BaseModel):
    servers: list[str] = Field(description="the enabled MCP servers shown (columns)")
    rows: list[RowOut]


@router.get("/access", summary="The access matrix: subjects x MCP servers with scopes and rules (admin:read)",
            response_model=MatrixOut,
            responses={**errors(e404="No such MCP server"), **BAD_BODY,
                       200: {"description": "the matrix as JSON, or as CSV with `format=csv`",
                             "content": {"text/csv": {"schema": {"type": "string"}}}}})
def access_matrix(session: DbSession, state: State, caller: Reader,
                  server: str = Query("", max_length=200, description="only this server id"),
                  tag: str = Query("", max_length=100, description="only servers with this tag"),
                  group: str = Query("", max_length=255, description="only groups whose name contains this"),
                  user: str = Query("", max_length=320, description="add users whose email, name or id matches"),
                  format: Literal["json", "csv"] = Query("json", description="csv: one line per subject and "
                                                                             "server")) -> MatrixOut | Response:
    if server and registry.get(session, server, state.settings.issuer) is None:
        raise not_found(f"no MCP server {server!r}")
    where = policies.MatrixFilter(server=server.strip(), tag=tag.strip(), group=group.strip(), user=user.strip())
    result, _ = policies.matrix(session, policies.StoredPolicy().compiled(session), where)
    if format == "csv":
        return csv_response(result.csv_rows(), "access.csv")
    return MatrixOut.model_validate(result.to_dict())
