"""Nothing stored is unpickled; secrets stay out of logs and error bodies."""

import hashlib
import logging
import pickle

import pytest
from sqlalchemy import delete, select, update

from service.cli import _redact
from service.db.models import Blob, BlobPart, ModelVersion
from service.storage import parts_sha256
from tests.support.data import mixed_csv
from tests.support.training import train_model


class _Exploit:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def trained(app):
    train_model(app, csv=mixed_csv(80), hyperparameters={"epochs": 1})


@pytest.mark.parametrize("fix_checksum", [False, True], ids=["checksum-fails", "checksum-forged"])
def test_a_pickle_in_place_of_the_weights_is_refused_not_executed(
    app, client, trained, tmp_path, fix_checksum, caplog
):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(marker))
    with app.extensions["trainserve"].database.transaction() as session:
        version = session.scalar(select(ModelVersion))
        key = version.weights_key
        session.execute(delete(BlobPart).where(BlobPart.blob_key == key, BlobPart.index > 0))
        digest = hashlib.sha256(payload).hexdigest()
        # The part's own hash is only right when the attacker forged every checksum too.
        part = {"data": payload, "size": len(payload)}
        session.execute(
            update(BlobPart)
            .where(BlobPart.blob_key == key)
            .values(**part, **({"sha256": digest} if fix_checksum else {}))
        )
        if fix_checksum:
            session.execute(
                update(Blob)
                .where(Blob.key == key)
                .values(
                    parts_sha256=parts_sha256([bytes.fromhex(digest)]), size=len(payload), parts=1
                )
            )
            version.weights_sha256 = digest
    with caplog.at_level(logging.ERROR):
        response = client.post("/v1/models/iris/predict", json={"records": [{"x1": 1}]})
    assert response.status_code == 500
    assert response.content_type == "application/problem+json"
    detail = response.get_json()["detail"]
    assert "iris version 1" in detail and "not loaded" in detail
    assert not marker.exists()
    assert "refused a stored model" in caplog.text


def test_urls_are_logged_without_their_passwords():
    for url in (
        "postgresql+psycopg://trainserve:s3cret@db:5432/trainserve",
        "redis://:s3cret@redis:6379/0",
        "sqla+sqlite:////home/u/.trainserve/broker.db",
    ):
        assert "s3cret" not in _redact(url)
    assert "db:5432" in _redact("postgresql+psycopg://trainserve:s3cret@db:5432/trainserve")
