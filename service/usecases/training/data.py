"""What an attempt trains on: the job's hyperparameters, its dataset read and prepared,
and the checkpoint it resumes from. How the rows are loaded changes here only."""

from __future__ import annotations

from dataclasses import dataclass

from service.db.models import Checkpoint, Dataset, Job
from service.ml import MLError, tabular
from service.ml.pipeline import PreparedData, prepare
from service.ml.training import TrainingConfig
from service.storage import DatabaseStorage
from service.usecases.training.lease import AttemptLease


@dataclass
class TrainingData:
    """The prepared splits, the config, and the checkpoint (tensors, state) if resuming."""

    prepared: PreparedData
    config: TrainingConfig
    checkpoint: tuple[bytes, dict] | None


def load(lease: AttemptLease) -> TrainingData:
    """Read the job's dataset and checkpoint in one transaction, then prepare the splits;
    MLError if the dataset was deleted or cannot be used."""
    with lease.db.transaction() as session:
        job = session.get(Job, lease.job_id)
        dataset = session.get(Dataset, job.dataset_id) if job.dataset_id else None
        if dataset is None:
            raise MLError("the job's dataset was deleted")
        data = DatabaseStorage(session).get(dataset.blob_key)
        target, feature_types = job.target, dict(job.feature_types)
        config = TrainingConfig.from_json(job.hyperparameters)
        checkpoint = session.get(Checkpoint, lease.job_id) if lease.resume_epoch else None
        if checkpoint is not None:
            checkpoint = (checkpoint.tensors, checkpoint.state)
    frame = tabular.from_parquet(data, columns=[*feature_types, target])
    prepared = prepare(
        frame,
        target,
        feature_types,
        validation_fraction=config.validation_fraction,
        seed=config.seed,
        scaling=config.scaling,
        folds=config.folds if config.network == "tabular" else 0,
    )
    return TrainingData(prepared, config, checkpoint)
