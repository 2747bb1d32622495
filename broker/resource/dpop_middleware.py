"""``DpopAuthMiddleware``: ``Authorization: DPoP`` for an MCP Python SDK server (RFC 9449 §7).

The SDK's authentication reads only ``Authorization: Bearer`` and gives the ``TokenVerifier`` the token
alone, while a DPoP proof is bound to the request's method and URL. Mounted in front of the SDK's
middleware (outermost), this ASGI middleware:

- for ``Authorization: DPoP <token>``: calls ``BrokerTokenVerifier.verify_dpop`` with the ``DPoP``
  header values, the method and the URL (the origin of the verifier's ``resource`` + the request path as
  sent, so a TLS-terminating proxy in front changes nothing). A refusal is answered here: 401 with
  ``WWW-Authenticate: DPoP error="invalid_dpop_proof"`` (or ``"invalid_token"``), ``algs=...``. A
  verified request goes on as ``Bearer <token>`` inside ``verifier.proven(...)``, so the SDK's
  ``verify_token`` call returns the verified token; later 401/403 challenges (``insufficient_scope``)
  are rewritten to the ``DPoP`` scheme;
- for any other request: passes it on (``verify_token`` refuses DPoP-bound tokens sent as Bearer);
  a 401 answer gets a second challenge ``DPoP algs="..."`` so clients learn DPoP is accepted, or,
  with ``require_dpop``, has its ``Bearer`` challenges turned into ``DPoP`` ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote, urlsplit

from broker.resource.dpop import DpopError
from broker.resource.metadata import www_authenticate_dpop
from broker.resource.verifier import BrokerTokenVerifier

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_TOKEN68 = re.compile(rb"[A-Za-z0-9._~+/-]+=*")  # RFC 9110 §11.2 (the DPoP scheme's credentials, §7.1)


class DpopAuthMiddleware:
    """See the module docstring. ``resource_metadata_url`` goes into the DPoP challenges it sends."""

    def __init__(self, app: ASGIApp, *, verifier: BrokerTokenVerifier, resource_metadata_url: str | None = None):
        self.app = app
        self.verifier = verifier
        self.resource_metadata_url = resource_metadata_url
        parts = urlsplit(verifier.resource)
        self._origin = f"{parts.scheme}://{parts.netloc}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorizations = _header_values(scope, b"authorization")
        if not any(v[:5].lower() == b"dpop " for v in authorizations):
            await self.app(scope, receive, _with_dpop_challenge(send, self._algs(), replace=self.verifier.require_dpop))
            return
        if len(authorizations) != 1 or not _TOKEN68.fullmatch(authorizations[0][5:].strip()):
            await self._refuse(send, DpopError("invalid_request", "one Authorization: DPoP <token> header"))
            return
        token = authorizations[0][5:].strip().decode("ascii")
        proofs = [v.decode("latin-1") for v in _header_values(scope, b"dpop")]
        try:
            access = await self.verifier.verify_dpop(token, proofs, method=scope["method"], url=self._url(scope))
        except DpopError as refused:
            await self._refuse(send, refused)
            return
        bearer_scope = {**scope, "headers": _as_bearer(scope["headers"], token)}
        with self.verifier.proven(access):
            await self.app(bearer_scope, receive, _with_dpop_challenge(send, self._algs(), replace=True))

    def _url(self, scope: Scope) -> str:
        """The URL the client addressed: the path as sent (``raw_path``, still percent-encoded, as in ``htu``)."""
        raw_path = scope.get("raw_path")
        if isinstance(raw_path, bytes) and raw_path:
            return self._origin + raw_path.decode("latin-1")
        root: str = scope.get("root_path", "")
        path: str = scope["path"]
        return self._origin + quote(path if path.startswith(root) else root + path)

    def _algs(self) -> str:
        return " ".join(self.verifier.dpop_algorithms)

    async def _refuse(self, send: Send, refused: DpopError) -> None:
        try:
            challenge = www_authenticate_dpop(self.verifier.dpop_algorithms, self.resource_metadata_url,
                                              refused.error, error_description=refused.description)
        except ValueError:  # a description that cannot be quoted: the error code alone still says what to do
            challenge = www_authenticate_dpop(self.verifier.dpop_algorithms, self.resource_metadata_url, refused.error)
        body = json.dumps({"error": refused.error, "error_description": refused.description}).encode()
        status = 400 if refused.error == "invalid_request" else 401  # RFC 6750 §3.1
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"), (b"www-authenticate", challenge.encode())]})
        await send({"type": "http.response.body", "body": body})


def _header_values(scope: Scope, name: bytes) -> list[bytes]:
    return [value for key, value in scope["headers"] if key.lower() == name]


def _as_bearer(headers: list[tuple[bytes, bytes]], token: str) -> list[tuple[bytes, bytes]]:
    return [(k, b"Bearer " + token.encode()) if k.lower() == b"authorization" else (k, v) for k, v in headers]


def _with_dpop_challenge(send: Send, algs: str, *, replace: bool) -> Send:
    """``send``, with a 401/403's ``Bearer`` challenges turned into ``DPoP`` ones (``replace``), or a
    401 given a ``DPoP algs=...`` challenge beside them."""
    algs_param = f'algs="{algs}"'.encode()

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] in (401, 403):
            headers = list(message.get("headers", []))
            if replace:
                headers = [(k, _as_dpop_challenge(v, algs_param) if k.lower() == b"www-authenticate" else v)
                           for k, v in headers]
            elif message["status"] == 401:
                headers.append((b"www-authenticate", b"DPoP " + algs_param))
            message = {**message, "headers": headers}
        await send(message)

    return sending


def _as_dpop_challenge(challenge: bytes, algs_param: bytes) -> bytes:
    if challenge[:6].lower() != b"bearer" or challenge[6:7] not in (b"", b" "):
        return challenge
    params = challenge[6:].strip()
    return b"DPoP " + (params + b", " if params else b"") + algs_param
