"""The SCIM protocol core without a web framework or a database: auth, bodies, filters, paging, errors."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from scim2_models import (
    Group,
    InvalidFilterException,
    InvalidSyntaxException,
    InvalidValueException,
    NoTargetException,
    PatchOp,
    SearchRequest,
    UnauthorizedException,
)

from broker.config import ScimToken
from broker.lifecycle.scim import auth, filters, wire

OKTA = "o" * 40
ENTRA = "e" * 40


def tokens() -> list[ScimToken]:
    return [ScimToken(idp="okta", token=SecretStr(OKTA)), ScimToken(idp="entra", token=SecretStr(ENTRA)),
            ScimToken(idp="unset")]


@pytest.mark.parametrize("header,idp", [(f"Bearer {OKTA}", "okta"), (f"bearer {ENTRA}", "entra"),
                                        (f"Bearer  {OKTA} ", "okta")])
def test_each_token_names_its_idp(header: str, idp: str) -> None:
    assert auth.authenticate(tokens(), header) == wire.ScimClient(idp)
    assert auth.authenticate(tokens(), header).actor == f"scim:{idp}"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", f"Basic {OKTA}", f"Bearer {OKTA[:-1]}",
                                    f"Bearer {OKTA}{ENTRA}", "Bearer None", "Bearer \u00e9"])
def test_anything_else_is_unauthorized(header: str | None) -> None:
    with pytest.raises(UnauthorizedException):
        auth.authenticate(tokens(), header)


def test_without_a_configured_token_nobody_gets_in() -> None:
    with pytest.raises(UnauthorizedException):
        auth.authenticate([], f"Bearer {OKTA}")
    with pytest.raises(UnauthorizedException):
        auth.authenticate([ScimToken(idp="blank", token=SecretStr(""))], "Bearer  ")


@pytest.mark.parametrize("raw,content_type,error", [
    (b"{}", "text/plain", wire.UnsupportedMediaType),
    (b"{}", None, wire.UnsupportedMediaType),
    (b"\xff\xfe{}", "application/scim+json", InvalidSyntaxException),
    (b"{", "application/scim+json", InvalidSyntaxException),
    (b"[1]", "application/json", InvalidSyntaxException),
    (b'{"a": Infinity}', "application/json", InvalidSyntaxException),
    (b"[" * 100_000, "application/json", InvalidSyntaxException),
    (b'{"a": "\\u0000"}', "application/json", InvalidValueException),
    (b'{"\\ud800": 1}', "application/json", InvalidValueException),
])
def test_bodies_that_are_not_a_json_object_are_refused(raw: bytes, content_type: str | None, error: type) -> None:
    with pytest.raises(error):
        wire.read_json(raw, content_type)


def test_json_object_bodies_are_read() -> None:
    assert wire.read_json('{"userName": "jürgen"}'.encode(), "application/scim+json; charset=utf-8") == {
        "userName": "jürgen"}


def test_require_schema() -> None:
    wire.require_schema({"schemas": ["URN:ietf:params:scim:api:messages:2.0:PatchOp"]}, PatchOp.__schema__)
    for payload in ({}, {"schemas": "x"}, {"schemas": [1]}, {"schemas": ["urn:x"]}):
        with pytest.raises(InvalidSyntaxException):
            wire.require_schema(payload, PatchOp.__schema__)


def parsed(text: str, model: type = wire.UserResource) -> SearchRequest:
    return wire.search_parameters(model, [("filter", text)], 100)


@pytest.mark.parametrize("text,expected", [
    ('userName eq "Alice@Example.COM"', [("userName", "alice@example.com")]),
    ('externalId eq "00uAbC"', [("externalId", "00uAbC")]),
    ('id eq "1" and userName eq "B"', [("id", "1"), ("userName", "b")]),
    ('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "X"', [("userName", "x")]),
])
def test_user_filters_become_criteria(text: str, expected: list) -> None:
    assert filters.criteria(parsed(text).filter, filters.USER_ATTRIBUTES) == expected


@pytest.mark.parametrize("text,expected", [
    ('displayName eq "Sales EMEA"', [("displayName", "sales emea")]),
    ('id eq "g" and members eq "u"', [("id", "g"), ("members", "u")]),
    ('members.value eq "u"', [("members", "u")]),
])
def test_group_filters_become_criteria(text: str, expected: list) -> None:
    assert filters.criteria(parsed(text, Group).filter, filters.GROUP_ATTRIBUTES) == expected


@pytest.mark.parametrize("text", ['userName sw "a"', 'userName eq "a" or externalId eq "b"', "userName pr",
                                  'emails.value eq "a@b.c"', 'name.givenName eq "A"', 'not (userName eq "a")',
                                  'emails[type eq "work"]', "active eq false",
                                  'meta.created gt "2020-01-01T00:00:00Z"'])
def test_filters_the_broker_cannot_answer_are_invalid_filter(text: str) -> None:
    with pytest.raises(InvalidFilterException):
        filters.criteria(parsed(text).filter, filters.USER_ATTRIBUTES)


@pytest.mark.parametrize("text", ["userName eq", 'nope eq "x"', '(userName eq "a"', "userName eq 'a'"])
def test_malformed_filters_are_invalid_filter(text: str) -> None:
    with pytest.raises(InvalidFilterException):
        parsed(text)


def test_paging_parameters() -> None:
    search = wire.search_parameters(wire.UserResource, [("startIndex", "0"), ("count", "5000"),
                                                        ("sortBy", "userName"), ("other", "x")], 200)
    assert (search.start_index_0, search.count) == (0, 200)  # startIndex < 1 is 1; count capped
    assert wire.search_parameters(wire.UserResource, [("count", "-3")], 200).count == 0
    for bad in ([("count", "1e3")], [("count", " ")], [("startIndex", "2147483648")], [("count", "٣")],
                [("Count", "1"), ("count", "2")]):
        with pytest.raises(InvalidValueException):
            wire.search_parameters(wire.UserResource, bad, 200)
    with pytest.raises(InvalidValueException):
        wire.search_parameters(wire.UserResource, [("filter", 'userName eq "a"')], 200, allow_paging=False)


def test_wants_follows_attributes_and_excluded_attributes() -> None:
    def params(**raw: str) -> SearchRequest:
        return wire.search_parameters(Group, list(raw.items()), 100)

    assert wire.wants(params(), "members")
    assert not wire.wants(params(excludedAttributes="members"), "members")
    assert not wire.wants(params(attributes="displayName"), "members")
    assert wire.wants(params(attributes="displayName,members.value"), "members")


def test_fold_compares_without_case_in_one_unicode_form() -> None:
    assert wire.fold("J\u0055\u0308RGEN") == wire.fold("jürgen") == "jürgen"


def test_errors_are_single_line_and_short() -> None:
    with pytest.raises(InvalidValueException) as raised:
        wire.validate(wire.UserResource, {"userName": 5, "emails": [{"value": "x"}]},
                      wire.Context.RESOURCE_CREATION_REQUEST)
    status, body = wire.error_body(raised.value)
    assert status == 400 and body["status"] == "400" and body["scimType"] == "invalidValue"
    assert "\n" not in body["detail"] and len(body["detail"]) <= wire.MAX_DETAIL
    status, body = wire.error_body(NoTargetException(detail="x\n" * 400))
    assert body["scimType"] == "noTarget" and "\n" not in body["detail"] and len(body["detail"]) <= wire.MAX_DETAIL
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


def test_a_failed_patch_leaves_the_resource_as_it_was() -> None:
    resource = wire.UserResource(id="1", user_name="a", active=True)
    operations = wire.validate(PatchOp[wire.UserResource], {"schemas": [str(PatchOp.__schema__)], "Operations": [
        {"op": "replace", "path": "active", "value": False},
        {"op": "replace", "path": "nickName", "value": ["not", "a", "string"]}]}, wire.Context.RESOURCE_PATCH_REQUEST)
    with pytest.raises(InvalidValueException):
        wire.apply_patch(operations, resource)
    assert resource.active is True


@pytest.mark.parametrize("text,ok", [("2e8fdf0a-56a4-4ce0-a783-aabdc6231fd7", True), ("abc", True),
                                     ("", False), ("x" * 37, False), ("a/b", False), ("é", False)])
def test_resource_ids(text: str, ok: bool) -> None:
    assert wire.resource_id(text) is ok
