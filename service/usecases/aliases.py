"""Model aliases (MLflow's ``@alias``): a movable name for one version of a model.

An alias moves with one upsert statement, so a reader sees the old version or the new
one, never neither. :func:`resolve_version` turns a version number or an alias into a
version number once, at the start of a prediction: a prediction in flight finishes on
the version it started with even if the alias moves meanwhile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from service.db.models import ModelAlias, ModelVersion, utcnow
from service.db.session import Database
from service.usecases.errors import InvalidRequest, NotFound

ALIAS_PATTERN = r"^(?!\d+$)[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ALIAS_RULE = (
    "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, "
    "and not all digits (those are version numbers)"
)
# "latest" already means the newest version wherever a version is optional.
RESERVED = frozenset({"latest"})


@dataclass(frozen=True)
class Alias:
    name: str
    alias: str
    version: int
    updated_at: datetime


def check_alias(alias: str, field: str = "alias") -> None:
    """400 naming ``field`` unless ``alias`` is a valid alias name."""
    if not re.match(ALIAS_PATTERN, alias):
        raise InvalidRequest(ALIAS_RULE, field)
    if alias.lower() in RESERVED:
        raise InvalidRequest(f"{alias!r} is reserved", field)


def set_alias(db: Database, tenant: str, name: str, alias: str, version: int) -> Alias:
    """Point ``alias`` at ``version`` of model ``name`` (created or moved atomically)."""
    check_alias(alias)
    with db.transaction() as session:
        return set_alias_in(session, tenant, name, alias, version)


def set_alias_in(session: Session, tenant: str, name: str, alias: str, version: int) -> Alias:
    """:func:`set_alias` inside the caller's transaction (a sweep promoting its winner)."""
    exists = session.scalar(
        select(ModelVersion.id).where(
            ModelVersion.tenant == tenant,
            ModelVersion.name == name,
            ModelVersion.version == version,
        )
    )
    if exists is None:
        raise NotFound(f"no version {version} of model {name!r}")
    now = utcnow()
    insert = postgresql_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    statement = insert(ModelAlias).values(
        tenant=tenant, name=name, alias=alias, version=version, updated_at=now
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant", "name", "alias"],
            set_={"version": version, "updated_at": now},
        )
    )
    return Alias(name, alias, version, now)


def get_alias(db: Database, tenant: str, name: str, alias: str) -> Alias:
    with db.transaction() as session:
        row = session.scalar(_query(tenant, name).where(ModelAlias.alias == alias))
    if row is None:
        raise NotFound(f"model {name!r} has no alias {alias!r}")
    return Alias(row.name, row.alias, row.version, row.updated_at)


def delete_alias(db: Database, tenant: str, name: str, alias: str) -> None:
    with db.transaction() as session:
        deleted = session.execute(
            delete(ModelAlias).where(
                ModelAlias.tenant == tenant, ModelAlias.name == name, ModelAlias.alias == alias
            )
        ).rowcount
    if not deleted:
        raise NotFound(f"model {name!r} has no alias {alias!r}")


def list_aliases(db: Database, tenant: str, name: str) -> dict[str, int]:
    """The model's aliases, alias → version, alphabetically."""
    with db.transaction() as session:
        rows = session.scalars(_query(tenant, name).order_by(ModelAlias.alias))
        return {row.alias: row.version for row in rows}


def resolve_version(
    db: Database, tenant: str, name: str, version_or_alias: int | str | None, cache=None
) -> int | None:
    """A version number from a number, a numeric string or an alias (``None``: latest).

    The one place aliases are resolved; an unknown alias is a 404. With ``cache`` (the
    API process's ``ModelCache``) an alias is looked up at most once per
    ``TRAINSERVE_MODEL_RESOLVE_TTL_SECONDS``, as "latest" is: a moved alias reaches every
    API process within that bound.
    """
    if cache is not None and isinstance(version_or_alias, str) and not _digits(version_or_alias):
        return cache.resolve(
            (tenant, name, "alias", version_or_alias),
            lambda: resolve_version(db, tenant, name, version_or_alias),
            immutable=False,
        )
    if version_or_alias is None or isinstance(version_or_alias, int):
        return version_or_alias
    if _digits(version_or_alias):
        if len(version_or_alias) > 9:
            raise NotFound(f"no version {version_or_alias} of model {name!r}")
        return int(version_or_alias)
    try:
        return get_alias(db, tenant, name, version_or_alias).version
    except NotFound:
        raise NotFound(f"no version or alias {version_or_alias!r} of model {name!r}") from None


def _digits(text: str) -> bool:
    """ASCII digits only: ``"²".isdigit()`` is true, but ``int("²")`` fails."""
    return text.isascii() and text.isdigit()


def _query(tenant: str, name: str):
    return select(ModelAlias).where(ModelAlias.tenant == tenant, ModelAlias.name == name)
