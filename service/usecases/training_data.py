"""A job's data, prepared once per worker machine: the stored table copied to local disk,
encoded into float32 files, memory-mapped.

Both steps are entries of the worker's :class:`~service.ml.cache.FileCache`
(``TRAINSERVE_CACHE_DIR``, at most ``TRAINSERVE_CACHE_BYTES``, least recently used out):

- ``table-<dataset id>``: the dataset's Parquet file, streamed from storage part by
  part (each part's SHA-256 checked);
- ``encoded-<hash>``: the encoded training and validation splits, keyed by everything
  they are made from (dataset, target, feature types, validation fraction, seed,
  scaling, folds, the encoder's format), so the next job on the same data with the same
  preprocessing (a retried attempt, a sweep's trials sharing a seed) reuses them.

A worker's own memory holds one row group at a time, never the table, the matrix or
anything else with an entry per row: the labels and the split are files too, and an
epoch's shuffle holds one entry per block of rows (``Trainer._epoch_order``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from service.config import Settings, default_home
from service.db.session import Database
from service.ml.cache import FileCache
from service.ml.hyperparameters import TrainingConfig
from service.ml.pipeline import ENCODED_FORMAT, PreparedData, encode_file, load_encoded
from service.ml.preprocessing import ENCODER_FORMAT
from service.storage import backend_for, read_parts


def cache_root(settings: Settings) -> Path:
    """The worker's cache directory: ``TRAINSERVE_CACHE_DIR``, or ``<home>/cache``."""
    return Path(settings.cache_dir) if settings.cache_dir else default_home() / "cache"


def prepared_data(
    db: Database,
    settings: Settings,
    *,
    dataset_id: str,
    blob_key: str,
    target: str,
    feature_types: dict[str, str],
    config: TrainingConfig,
) -> PreparedData:
    """The job's encoded splits, from the cache or built into it (folds only for the
    tabular network, the one that bags)."""
    cache = FileCache(cache_root(settings), settings.cache_bytes)
    validation_fraction, seed, scaling = config.validation_fraction, config.seed, config.scaling
    folds = config.folds if config.network == "tabular" else 0

    def fetch(directory: Path) -> None:
        with open(directory / "table.parquet", "wb") as out:
            for part in read_parts(db, backend_for(db), blob_key):
                out.write(part)

    def encode(directory: Path) -> None:
        with cache.entry(f"table-{dataset_id}", fetch) as table:
            encode_file(
                table / "table.parquet",
                target,
                feature_types,
                directory,
                validation_fraction=validation_fraction,
                seed=seed,
                scaling=scaling,
                folds=folds,
            )

    recipe = [
        dataset_id,
        target,
        list(feature_types.items()),
        validation_fraction,
        seed,
        scaling,
        folds,
        ENCODED_FORMAT,
        ENCODER_FORMAT,
    ]
    key = "encoded-" + hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:32]
    # The maps stay readable after the block even if the entry is evicted later: a
    # removed file lives on while it is mapped.
    with cache.entry(key, encode) as directory:
        return load_encoded(directory)
