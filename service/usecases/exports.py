"""Export a model version as a zip in one of the formats of ``service.ml.export``."""

from __future__ import annotations

from dataclasses import dataclass

from service.db.session import Database
from service.ml import export
from service.usecases import models


@dataclass(frozen=True)
class Export:
    """The zip and the file name it is offered under."""

    filename: str
    data: bytes


def export_version(
    db: Database, tenant: str, name: str, version: int, fmt: str
) -> Export:
    """The version's zip in ``fmt``; stored weights that fail their checks are refused
    (``CorruptModel``) as by predict."""
    found = models.get_version(db, tenant, name, version)
    weights = models.stored_weights(db, found)
    # A private copy, never the cached model that predictions share: the ONNX exporter
    # swaps a module's parameters for fake tensors while it traces.
    bundle = models.load_bundle(found, weights)
    title = f"{found.name} version {found.version}"
    data = export.export_zip(bundle, found.description, weights, fmt, title)
    return Export(f"{found.name}-v{found.version}-{fmt}.zip", data)
