"""Filters the broker answers from its indexes: ``eq`` on identifying attributes, joined by ``and``.

scim2-models parses and checks the filter against the resource's schema (``invalidFilter`` for bad
syntax or an attribute the schema does not have). What is left is whether the broker can answer it:
RFC 7644 §3.12 makes ``invalidFilter`` also the answer to "the specified attribute and filter
comparison combination is not supported". Okta and Entra ID only send ``userName eq``,
``externalId eq``, ``displayName eq`` (and Entra ``id eq ... and members eq ...``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scim2_models import InvalidFilterException, Resource, ScimFilter
from scim2_models.path import AttrPath, CompareOperator, Comparison, LogicalExpr, LogicalOperator

from broker.lifecycle.scim.wire import fold

# attribute (lower case) -> (the criterion's name, whether values compare without case)
USER_ATTRIBUTES = {"id": ("id", False), "username": ("userName", True), "externalid": ("externalId", False)}
GROUP_ATTRIBUTES = {"id": ("id", False), "displayname": ("displayName", True), "externalid": ("externalId", False),
                    "members": ("members", False)}
CORE = ("urn:ietf:params:scim:schemas:core:2.0:user", "urn:ietf:params:scim:schemas:core:2.0:group")


def criteria(scim_filter: ScimFilter[Resource[Any]] | None,
             attributes: Mapping[str, tuple[str, bool]]) -> list[tuple[str, str]]:
    """The ``(attribute, value)`` pairs the filter requires, values folded where case does not count."""
    if scim_filter is None:
        return []
    node = scim_filter.ast
    terms = node.terms if isinstance(node, LogicalExpr) and node.op == LogicalOperator.and_ else (node,)
    found = []
    for term in terms:
        if not isinstance(term, Comparison) or term.op != CompareOperator.eq or not isinstance(term.value, str):
            raise _unsupported(attributes)
        known = attributes.get(_name(term.attr_path) or "")
        if known is None:
            raise _unsupported(attributes)
        name, caseless = known
        found.append((name, fold(term.value) if caseless else term.value))
    return found


def _name(path: AttrPath) -> str | None:
    if path.uri is not None and path.uri.lower() not in CORE:
        return None
    if path.sub_attr is not None:  # only members.value, which is what "members eq" compares too
        return "members" if (path.attr.lower(), path.sub_attr.lower()) == ("members", "value") else None
    return path.attr.lower()


def _unsupported(attributes: Mapping[str, tuple[str, bool]]) -> InvalidFilterException:
    names = ", ".join(name for name, _ in attributes.values())
    return InvalidFilterException(detail=f"supported filters: 'eq' on {names} (string values), joined by 'and'")
