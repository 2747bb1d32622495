"""A fake enterprise IdP for ID-JAG grants: its JWKS over loopback HTTP, ES256-signed ID-JAGs made in advance."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec


class FakeIdp:
    """Serves ``/jwks`` on 127.0.0.1 from a daemon thread (fetched once by the broker, then cached)."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        body = json.dumps({"keys": [{**jwk, "kid": "bench-1", "alg": "ES256", "use": "sig"}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def assertions(self, n: int, audience: str, client_id: str, resource: str, users: int = 100) -> list[str]:
        """``n`` ID-JAGs, each with a fresh ``jti`` (the broker refuses replays), for ``users`` users."""
        now = int(time.time())
        return [jwt.encode({"iss": self.issuer, "sub": f"user-{i % users}", "aud": audience, "client_id": client_id,
                            "jti": uuid.uuid4().hex, "iat": now, "exp": now + 600, "resource": resource,
                            "scope": "tools:read", "email": f"user-{i % users}@example.com", "email_verified": True},
                           self.key, algorithm="ES256", headers={"typ": "oauth-id-jag+jwt", "kid": "bench-1"})
                for i in range(n)]
