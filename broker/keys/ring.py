"""The key ring: create, rotate, load and publish signing keys of one purpose.

Private keys leave this module only as ``ActiveKey`` objects for signing; in the database
they are PKCS#8 DER encrypted with AES-GCM, the associated data naming purpose, kid and
algorithm. Functions take the session and never commit.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils
from sqlalchemy.orm import Session

from broker.config import Settings
from broker.keys import schedule
from broker.keys.crypto import DecryptionError, Encryptor, signing_key_aad
from broker.storage import changes, mcp_servers
from broker.storage import signing_keys as repo
from broker.storage.hot import Tx
from broker.storage.models import utcnow

BROKER = "broker"  # the purpose of the broker's own token-signing keys
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class ActiveKey:
    """A decrypted private key, ready to sign."""

    kid: str
    algorithm: str
    private_key: PrivateKey

    def sign(self, claims: dict[str, Any], typ: str) -> str:
        """A compact JWS of ``claims`` (RFC 7515), headers ``alg``, ``kid`` and ``typ``."""
        key = self.private_key
        if self.algorithm != "ES256" or not isinstance(key, ec.EllipticCurvePrivateKey):
            return jwt.encode(claims, key, algorithm=self.algorithm, headers={"kid": self.kid, "typ": typ})
        signing_input = _es256_header(self.kid, typ) + b"." + _b64(json.dumps(claims, separators=(",", ":")).encode())
        der = key.sign(signing_input, _ECDSA_SHA256)
        r, s = utils.decode_dss_signature(der)
        return (signing_input + b"." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))).decode()


_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


@functools.lru_cache(maxsize=64)
def _es256_header(kid: str, typ: str) -> bytes:
    return _b64(json.dumps({"alg": "ES256", "kid": kid, "typ": typ}, separators=(",", ":")).encode())


KeyRecord = repo.KeyRow  # a signing key's row as the ring caches it (``schedule.KeyTimes``); still encrypted


class KeyRing:
    """The keys of one purpose. Their rows are cached and read again every ``RECHECK_SECONDS`` (and
    at once after this process changes them), so a rotation by another instance or the CLI, which is
    scheduled ``keys.activation_delay`` ahead, is seen long before it matters; decrypted keys are
    kept by ``kid``, which never changes meaning. With a ``publication``, ``grace`` (how long a retired
    key stays published) follows the MCP servers' own token lifetimes, read with the keys.
    """

    RECHECK_SECONDS = 5.0

    def __init__(self, encryptor: Encryptor, purpose: str = BROKER, algorithm: str = "ES256",
                 rsa_key_size: int = 3072, publication: schedule.Publication | None = None):
        self.encryptor = encryptor
        self.purpose = purpose
        self.algorithm = algorithm
        self.rsa_key_size = rsa_key_size
        self.publication = publication
        self.grace = publication.grace(None) if publication else dt.timedelta(0)  # as of the last read
        self._recheck = changes.Recheck("signing_keys", self.RECHECK_SECONDS)
        self._records: tuple[KeyRecord, ...] = ()
        self._decrypted: dict[str, ActiveKey] = {}

    @classmethod
    def of_broker(cls, encryptor: Encryptor, settings: Settings) -> KeyRing:
        """The broker's own keys, published while any token they signed may be valid."""
        return cls(encryptor, BROKER, settings.keys.algorithm, settings.keys.rsa_key_size, publication(settings))

    def records(self, session: Session) -> tuple[KeyRecord, ...]:
        """This purpose's keys, oldest activation first, from the cache when it is fresh."""
        token = self._recheck.start()
        if token is not None:
            self._records = tuple(repo.rows_of(session, self.purpose))
            if self.publication is not None:
                self.grace = self.publication.grace(mcp_servers.longest_lifetime(session))
            self._recheck.done(token)
        return self._records

    def fresh_records(self) -> tuple[KeyRecord, ...] | None:
        """The cached keys while they need no fresh read; None when ``records_hot`` must read them."""
        return self._records if self._recheck.start() is None else None

    async def records_hot(self, tx: Tx) -> tuple[KeyRecord, ...]:
        """``records`` in a transaction of the hot lane."""
        token = self._recheck.start()
        if token is not None:
            self._records = tuple(await repo.rows_of_hot(tx, self.purpose))
            if self.publication is not None:
                self.grace = self.publication.grace(await mcp_servers.longest_lifetime_hot(tx))
            self._recheck.done(token)
        return self._records

    def ensure(self, session: Session, now: dt.datetime | None = None) -> KeyRecord | None:
        """Create an immediately active key when none signs now; return it, or None if one existed."""
        now = now or utcnow()
        if schedule.signing_key(repo.list_keys(session, self.purpose), now) is not None:
            return None
        return self._add(session, activates_at=now, now=now)

    def rotate(self, session: Session, delay: dt.timedelta, now: dt.datetime | None = None) -> KeyRecord:
        """Publish a new key now that starts signing after ``delay``; older keys retire then."""
        now = now or utcnow()
        return self._succeed(session, repo.list_keys(session, self.purpose), now + delay, now)

    def rotate_if_due(self, session: Session, every: dt.timedelta, delay: dt.timedelta,
                      now: dt.datetime | None = None) -> KeyRecord | None:
        """Scheduled rotation (``schedule.next_activation``): the new key, or None when none is due. The
        keys stay locked until the caller commits, so instances running this at once add one key."""
        now = now or utcnow()
        repo.lock_keys(session, self.purpose)
        keys = repo.list_keys(session, self.purpose)
        activates_at = schedule.next_activation(keys, now, every, delay)
        return None if activates_at is None else self._succeed(session, keys, activates_at, now)

    def _succeed(self, session: Session, keys: list[KeyRecord], activates_at: dt.datetime,
                 now: dt.datetime) -> KeyRecord:
        for old in schedule.retirements_for_rotation(keys, activates_at):
            repo.retire(session, old.kid, activates_at)
        return self._add(session, activates_at=activates_at, now=now)

    def active(self, session: Session, now: dt.datetime | None = None) -> ActiveKey:
        return self.signer(self.records(session), now or utcnow())

    def signer(self, records: tuple[KeyRecord, ...], now: dt.datetime) -> ActiveKey:
        """The key that signs at ``now`` among ``records``, decrypted once per ``kid``."""
        record = schedule.signing_key(records, now)
        if record is None:
            raise LookupError(f"no active {self.purpose} signing key")
        key = self._decrypted.get(record.kid)
        if key is None:
            key = self._decrypted[record.kid] = self.decrypt(record)
        return key

    def jwks(self, session: Session, grace: dt.timedelta | None = None,
             now: dt.datetime | None = None) -> dict[str, Any]:
        """The published keys; retired ones for ``grace``, else the ring's own."""
        records = self.records(session)
        return jwk_set(records, self.grace if grace is None else grace, now or utcnow())

    def verify_kek(self, session: Session) -> None:
        """Raise ``DecryptionError`` naming the first stored key (of any purpose) this KEK cannot open."""
        for row in repo.all_keys(session):
            try:
                self.decrypt(row)
            except DecryptionError as exc:
                raise DecryptionError(f"cannot decrypt stored signing key {row.kid}") from exc

    def decrypt(self, row: KeyRecord) -> ActiveKey:
        der = self.encryptor.decrypt(row.private_key_encrypted, signing_key_aad(row.purpose, row.kid,
                                                                                row.algorithm))
        private_key = serialization.load_der_private_key(der, password=None)
        assert isinstance(private_key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey))
        return ActiveKey(kid=row.kid, algorithm=row.algorithm, private_key=private_key)

    def _add(self, session: Session, activates_at: dt.datetime, now: dt.datetime) -> KeyRecord:
        private_key = generate(self.algorithm, self.rsa_key_size)
        jwk = public_jwk(private_key, self.algorithm)
        der = private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        sealed = self.encryptor.encrypt(der, signing_key_aad(self.purpose, jwk["kid"], self.algorithm))
        row = KeyRecord(kid=jwk["kid"], purpose=self.purpose, algorithm=self.algorithm, public_jwk=jwk,
                        private_key_encrypted=sealed, created_at=now, activates_at=activates_at, retired_at=None)
        repo.add(session, row)
        return row


def publication(settings: Settings) -> schedule.Publication:
    return schedule.Publication(settings.longest_jwt_lifetime, settings.tokens.clock_skew)


def jwk_set(records: tuple[KeyRecord, ...], grace: dt.timedelta, now: dt.datetime) -> dict[str, list[dict[str, Any]]]:
    """The published keys among ``records`` as a JWK set (RFC 7517 §5)."""
    return {"keys": [dict(k.public_jwk) for k in schedule.published(records, now, grace)]}


def generate(algorithm: str, rsa_key_size: int = 3072) -> PrivateKey:
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_key_size)
    raise ValueError(f"unsupported signing algorithm {algorithm!r}")


def public_jwk(private_key: PrivateKey, algorithm: str) -> dict[str, Any]:
    """The public JWK with ``kid`` = its RFC 7638 thumbprint, ``alg`` and ``use``."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key()))
    else:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
    jwk = {k: jwk[k] for k in ("kty", "crv", "x", "y", "n", "e") if k in jwk}
    return {**jwk, "kid": thumbprint(jwk), "alg": algorithm, "use": "sig"}


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()

