"""Run the Alembic migrations in ``migrations/`` against a database URL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url``, built in code so no alembic.ini lookup is needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema at ``url`` up to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Take the schema at ``url`` down to ``revision``."""
    command.downgrade(alembic_config(url), revision)


def at_head(url: str) -> bool:
    """Whether the schema at ``url`` is at the latest revision of ``migrations/``."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()
    return current == heads


def wait_for_head(url: str, timeout: float, interval: float = 2.0) -> bool:
    """Poll until the schema at ``url`` is at head (a migration job ran); ``False`` after
    ``timeout`` seconds. An unreachable database counts as not yet."""
    import time

    from sqlalchemy.exc import DBAPIError

    deadline = time.monotonic() + timeout
    while True:
        try:
            if at_head(url):
                return True
        except DBAPIError:
            pass
        if time.monotonic() + interval > deadline:
            return False
        time.sleep(interval)
