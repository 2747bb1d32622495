"""What the web layer hands the protocol core for one HTTP request (dynamic registration), and authlib's view
of it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc6749.requests import JsonPayload, JsonRequest
from sqlalchemy.orm import Session

from broker.oauth.params import Params


class Headers(dict[str, str]):
    """Case-insensitive header lookup (authlib asks for ``Authorization``)."""

    def __init__(self, items: Mapping[str, str]):
        super().__init__({k.lower(): v for k, v in items.items()})

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


@dataclass
class HttpRequest:
    """A request as plain values: the web layer's only contract with the core."""

    method: str
    url: str
    headers: Mapping[str, str]
    params: Params
    db: Session
    now: dt.datetime
    client_ip: str | None = None
    json: Any = None
    # What the web layer fetched before the transaction began (e.g. an assertion issuer's key).
    context: dict[str, Any] = field(default_factory=dict)


class _Json(JsonPayload):
    def __init__(self, data: Any):
        self._data = data

    @property
    def data(self) -> Any:
        return self._data


class BrokerJsonRequest(JsonRequest):
    def __init__(self, http: HttpRequest):
        super().__init__(http.method, http.url, headers=Headers(http.headers))
        self.payload = _Json(http.json)
        self.db = http.db
        self.now = http.now
        self.http = http
