"""The schema comes from Alembic only: one head, up and down, and no drift from the models."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from service.db.migrate import alembic_config, downgrade, upgrade
from service.db.models import Base
from service.db.session import make_engine


def test_there_is_exactly_one_head():
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1


def _drift(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return request.getfixturevalue("postgres_url")


def test_upgrade_matches_the_models_and_downgrade_undoes_it(url):
    upgrade(url)
    assert _drift(url) == []
    downgrade(url, "base")
    upgrade(url)
    assert _drift(url) == []


def test_db_wait_returns_once_the_schema_is_at_head(tmp_path, monkeypatch):
    # `trainserve db wait`: the Kubernetes pods' init step while the migration Job runs.
    from service.cli import main
    from service.db.migrate import at_head, wait_for_head

    for name in ("TRAINSERVE_DATABASE_URL", "TRAINSERVE_BROKER_URL"):
        monkeypatch.setenv(name, "")  # restored afterwards; `--home` below sets them

    url = f"sqlite:///{tmp_path / 'w.db'}"
    assert not at_head(url)
    assert not wait_for_head(url, timeout=0.5, interval=0.1)
    assert main(["db", "wait", "--timeout", "0.5", "--home", str(tmp_path / "home")]) == 1
    upgrade(url)
    assert at_head(url) and wait_for_head(url, timeout=0.5)
    assert main(["db", "upgrade", "--home", str(tmp_path / "home")]) == 0
    assert main(["db", "wait", "--timeout", "5", "--home", str(tmp_path / "home")]) == 0
