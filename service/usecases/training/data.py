"""What an attempt trains on: the job's hyperparameters, its dataset read and prepared,
and the checkpoint it resumes from. How the rows are loaded changes here only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.db.models import Checkpoint, Dataset, Job
from service.ml import MLError
from service.ml.pipeline import PreparedData
from service.ml.training import TrainingConfig
from service.usecases import checkpoints
from service.usecases.training.lease import AttemptLease
from service.usecases.training_data import prepared_data

if TYPE_CHECKING:
    import torch


@dataclass
class TrainingData:
    """The prepared splits, the config, and the checkpoint (tensors, state) if resuming."""

    prepared: PreparedData
    config: TrainingConfig
    checkpoint: tuple[dict[str, torch.Tensor], dict] | None


def load(lease: AttemptLease) -> TrainingData:
    """Read the job's dataset and checkpoint in one transaction, then prepare the splits;
    MLError if the dataset was deleted or cannot be used."""
    with lease.db.transaction() as session:
        job = session.get(Job, lease.job_id)
        dataset = session.get(Dataset, job.dataset_id) if job.dataset_id else None
        if dataset is None:
            raise MLError("the job's dataset was deleted")
        dataset_id, blob_key = dataset.id, dataset.blob_key
        target, feature_types = job.target, dict(job.feature_types)
        config = TrainingConfig.from_json(job.hyperparameters)
        row = session.get(Checkpoint, lease.job_id) if lease.resume_epoch else None
        saved = (row.blob_key, row.state) if row is not None else None
    checkpoint = (checkpoints.tensors(lease.db, saved[0]), saved[1]) if saved else None
    prepared = prepared_data(
        lease.db,
        lease.settings,
        dataset_id=dataset_id,
        blob_key=blob_key,
        target=target,
        feature_types=feature_types,
        config=config,
    )
    return TrainingData(prepared, config, checkpoint)
