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


def test_0010_moves_an_existing_checkpoint_into_parts_and_back(url, tmp_path):
    """A checkpoint written before 0010 (one value, here over one 32 MiB part) becomes a
    blob in parts, readable with any backend configured; the downgrade folds it back, and
    drops one whose parts are in an object store, leaving them to 0009's sweeper."""
    import os

    from sqlalchemy import func, select, text

    from service.db.models import Blob, BlobPart, Job
    from service.db.session import Database
    from service.storage import Storage, backend_for, remove_abandoned
    from service.usecases import checkpoints

    tensors = os.urandom(32 * 1024 * 1024 + 5)
    upgrade(url, "0009")
    db = Database(url)
    with db.transaction() as session:
        job = Job(target="y", features=["x"], feature_types={}, model_name="m")
        job.hyperparameters, job.epochs, job.status = {}, 3, "running"
        session.add(job)
        session.flush()
        job_id = job.id
        session.execute(
            text(
                "INSERT INTO checkpoints (job_id, epoch, attempt, tensors, state, created_at) "
                "VALUES (:job, 2, 1, :tensors, '{\"format\": 1}', CURRENT_TIMESTAMP)"
            ),
            {"job": job_id, "tensors": tensors},
        )
    db.close()

    upgrade(url)
    objects = f"file://{tmp_path / 'objects'}"
    for db in (Database(url), Database(url, storage_url=objects)):
        with db.transaction() as session:
            key = session.scalar(text("SELECT blob_key FROM checkpoints"))
            assert session.get(Blob, key).parts == 2
        assert checkpoints.read(db, key) == tensors
        db.close()

    downgrade(url, "0009")
    db = Database(url)
    with db.transaction() as session:
        assert session.scalar(text("SELECT tensors FROM checkpoints")) == tensors
        assert session.scalar(select(func.count()).select_from(BlobPart)) == 0
    db.close()

    # A checkpoint whose parts are in an object store cannot come back into the row.
    upgrade(url)
    db = Database(url, storage_url=objects)
    with db.transaction() as session:
        Storage(session, backend_for(db)).put("checkpoints/elsewhere", b"t" * 10, part_size=4)
        session.execute(text("UPDATE checkpoints SET blob_key = 'checkpoints/elsewhere'"))
    db.close()
    downgrade(url, "0009")
    db = Database(url, storage_url=objects)
    with db.transaction() as session:
        assert session.scalar(text("SELECT count(*) FROM checkpoints")) == 0
    assert remove_abandoned(db, backend_for(db)) == 1
    assert backend_for(db).listing() == []
    db.close()


def test_0011_stores_parts_uncompressed_on_postgresql(postgres_url):
    """Parts are stored as they are (no pglz attempt, which cost seconds of the server's
    CPU per upload for nothing); the downgrade restores PostgreSQL's default."""
    from sqlalchemy import text

    def storage() -> str:
        engine = make_engine(postgres_url)
        try:
            with engine.connect() as connection:
                return connection.scalar(
                    text(
                        "SELECT attstorage FROM pg_attribute WHERE attrelid = "
                        "'blob_parts'::regclass AND attname = 'data'"
                    )
                )
        finally:
            engine.dispose()

    upgrade(postgres_url, "0010")
    assert storage() == "x"  # EXTENDED: compressed, then out of line
    upgrade(postgres_url)
    assert storage() == "e"  # EXTERNAL: out of line, uncompressed
    downgrade(postgres_url, "0010")
    assert storage() == "x"


def test_0012_blobs_written_since_read_with_the_code_from_before(url, tmp_path):
    """A blob written since 0012 keeps the hash of its parts' digests in parts_sha256 and
    no sha256: code from before (and a downgrade) skips the whole-blob check where sha256
    is NULL and still checks each part, so it reads the blob."""
    from sqlalchemy import text

    from service.db.session import Database
    from service.storage import Storage

    upgrade(url)
    db = Database(url)
    with db.transaction() as session:
        Storage(session).put("new", b"n" * 10, part_size=4)
    db.close()
    downgrade(url, "0011")
    db = Database(url)
    with db.transaction() as session:
        row = session.execute(text("SELECT sha256, parts FROM blobs WHERE key = 'new'")).one()
        hashes = session.scalars(text("SELECT sha256 FROM blob_parts WHERE blob_key = 'new'")).all()
    db.close()
    assert row == (None, 3) and len(hashes) == 3 and all(hashes)
    upgrade(url)
