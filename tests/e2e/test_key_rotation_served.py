"""Scheduled key rotation in a running ``broker serve``: the next key is in the JWKS before it signs, tokens
signed by the old key keep verifying against the JWKS until they have expired, then the old key leaves."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest

from tests.support.http_flow import sign_in
from tests.support.postgres import free_port
from tests.support.processes import BROKER, ServerProcess, registered_app, serve_config

pytestmark = pytest.mark.e2e
LIFETIME = 30  # seconds: access and ID tokens, no clock skew, so a retired key stays published this long


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.2)
    return time.monotonic()


def test_a_running_broker_rotates_on_schedule(tmp_path: Path) -> None:
    port = free_port()
    issuer, resource = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/mcp"
    tokens = {"access_token_lifetime": LIFETIME, "id_token_lifetime": LIFETIME, "clock_skew": 0}
    env = {"BROKER_CONFIG": str(serve_config(tmp_path / "broker.toml", issuer, tokens=tokens)),
           "BROKER_KEYS__ROTATE_EVERY": "6", "BROKER_KEYS__ACTIVATION_DELAY": "3"}
    app = registered_app(env, resource, tmp_path)
    with ServerProcess([*BROKER, "serve", "--port", "{port}"], env=env, log_path=tmp_path / "serve.log", port=port,
                       cwd=tmp_path) as server:
        def published() -> dict[str, dict]:
            return {k["kid"]: k for k in httpx.get(f"{server.base_url}/jwks").json()["keys"]}

        def kid_of(token: str) -> str:
            return jwt.get_unverified_header(token)["kid"]

        first = sign_in(issuer, app, resource, "alice", "alice-pw")
        old_kid = kid_of(first["access_token"])
        wait_for(lambda: len(published()) == 2, 10, "the next key published")
        [new_kid] = set(published()) - {old_kid}

        def refreshed() -> str:
            response = httpx.post(f"{issuer}/token", data={"grant_type": "refresh_token", "client_id": app,
                                                           "refresh_token": first["refresh_token"],
                                                           "resource": resource})
            first["refresh_token"] = response.json()["refresh_token"]
            return kid_of(response.json()["access_token"])

        assert refreshed() == old_kid  # published, not signing yet
        switched = wait_for(lambda: refreshed() == new_kid, 10, "the next key signing")
        old_key = jwt.PyJWK(published()[old_kid]).key
        assert jwt.decode(first["access_token"], old_key, algorithms=["ES256"], audience=resource)["sub"]
        left = wait_for(lambda: old_kid not in published(), LIFETIME + 15, "the old key leaving the JWKS")
    assert LIFETIME - 2 <= left - switched, "the old key left before the tokens it signed had expired"
