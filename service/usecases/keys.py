"""API keys: create, list, revoke, and authenticate a request's key to its tenant and scopes.

A key is ``ts_`` + 43 random URL-safe characters (256 bits); only its SHA-256 is
stored. A fast hash is enough for keys this long: there is no password to guess.

Each key holds a set of scopes (docs/security.md): ``predict`` (predict, OIP infer and
metadata, reading models), ``read`` (reading everything), ``train`` (datasets, jobs,
sweeps) and ``admin`` (deletes, aliases). ``service.auth`` says which scope each
endpoint needs. Keys made before scopes existed have all four.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import or_, select

from service.db.models import ApiKey, utcnow
from service.db.session import Database
from service.usecases.errors import InvalidRequest, NotFound

TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SCOPES = ("predict", "read", "train", "admin")


@dataclass(frozen=True)
class Principal:
    """Who a valid key acts as: its tenant, and what it may do."""

    tenant: str
    scopes: frozenset[str]


def parse_scopes(text: str | list[str] | tuple[str, ...]) -> frozenset[str]:
    """``"predict,read"`` or ``["predict", "read"]`` → the scopes; unknown ones are a 400."""
    parts = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    unknown = [p for p in parts if p not in SCOPES]
    if unknown or not parts:
        raise InvalidRequest(
            f"scopes are one or more of {', '.join(SCOPES)}"
            + (f"; {unknown[0]!r} is not one" if unknown else ""),
            "scope",
        )
    return frozenset(parts)


def scopes_text(scopes: frozenset[str]) -> str:
    """The stored form: the scopes in SCOPES order, space-separated."""
    return " ".join(s for s in SCOPES if s in scopes)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    db: Database,
    tenant: str,
    name: str | None = None,
    scopes: frozenset[str] | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key for ``tenant`` with ``scopes`` (default: all); returns the row and
    the plain key (shown once)."""
    if not TENANT_NAME.match(tenant):
        raise InvalidRequest(
            "a tenant name is 1-64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit",
            "tenant",
        )
    plain = "ts_" + secrets.token_urlsafe(32)
    with db.transaction() as session:
        key = ApiKey(
            tenant=tenant,
            name=name,
            prefix=plain[:11],
            key_hash=hash_key(plain),
            scopes=scopes_text(frozenset(SCOPES) if scopes is None else scopes),
        )
        session.add(key)
    return key, plain


def list_keys(db: Database) -> list[ApiKey]:
    with db.transaction() as session:
        return list(session.scalars(select(ApiKey).order_by(ApiKey.tenant, ApiKey.created_at)))


def revoke_key(db: Database, key_id_or_prefix: str) -> ApiKey:
    """Revoke by id or by the key's visible prefix (``ts_xxxxxxxx``).

    The prefix is accepted as `trainserve keys list` and `create` print it, with its
    trailing ``...``, so a copied line's field works as it is.
    """
    wanted = key_id_or_prefix.strip().removesuffix("...")
    with db.transaction() as session:
        found = list(
            session.scalars(
                select(ApiKey).where(or_(ApiKey.id == wanted, ApiKey.prefix == wanted))
            )
        )
        if len(found) != 1:
            raise NotFound(f"no single API key with id or prefix {key_id_or_prefix!r}")
        found[0].revoked_at = found[0].revoked_at or utcnow()
        return found[0]


def _principal_of(db: Database, key_hash: str) -> Principal | None:
    """Tenant and scopes of a valid, unrevoked key, by the key's SHA-256; ``None`` otherwise."""
    with db.transaction() as session:
        found = session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
    if found is None or found.revoked_at is not None:
        return None
    return Principal(found.tenant, frozenset(found.scopes.split()))


class KeyCache:
    """Recent successful authentications of this process, for ``ttl`` seconds.

    A revoked key therefore stops working within ``ttl`` seconds in every API process
    (``TRAINSERVE_AUTH_CACHE_SECONDS``; 0 turns the cache off). Failures are never cached,
    so a new key works at once. Only the key's SHA-256 is kept, as in the database.
    """

    SIZE = 4096

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._principals: dict[str, tuple[Principal, float]] = {}

    def authenticate(self, db: Database, key: str) -> Principal | None:
        """The tenant and scopes of a valid, unrevoked key; ``None`` otherwise."""
        digest = hash_key(key)
        now = time.monotonic()
        cached = self._principals.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        principal = _principal_of(db, digest)
        if principal is not None and self.ttl > 0:
            if len(self._principals) >= self.SIZE:
                self._principals.clear()
            self._principals[digest] = (principal, now + self.ttl)
        return principal
