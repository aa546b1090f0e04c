"""Comparing a model's versions: ordered by a final metric, or side by side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.db.models import ModelVersion
from service.db.session import Database
from service.usecases.aliases import resolve_version
from service.usecases.errors import InvalidRequest
from service.usecases.models import get_version, list_versions

# Final metrics a version can be ordered or compared by, and whether higher is better.
METRICS = {
    "val_accuracy": True,
    "val_loss": False,
    "train_accuracy": True,
    "train_loss": False,
    "accuracy": True,
    "macro_f1": True,
    "log_loss": False,
}
ORDER_KEYS = ("version", "created_at", *METRICS)
MAX_COMPARED = 20


@dataclass(frozen=True)
class Comparison:
    name: str
    versions: list[ModelVersion]
    differing_hyperparameters: list[str]
    best: dict[str, int]  # metric → the version best at it


def final_metrics(version: ModelVersion) -> dict[str, float | None]:
    """The version's scalar quality metrics: the kept epoch's row and the evaluation."""
    metrics = version.metrics or {}
    validation = metrics.get("validation") or {}
    return {
        name: metrics.get(name) if name in metrics else validation.get(name) for name in METRICS
    }


def ordered_versions(
    db: Database, tenant: str, name: str, order_by: str = "-version"
) -> list[ModelVersion]:
    """The versions ordered by ``order_by`` (a key of ORDER_KEYS; a ``-`` prefix for
    descending); versions without that metric come last."""
    key = order_by.removeprefix("-")
    if key not in ORDER_KEYS:
        raise InvalidRequest(
            f"must be one of {', '.join(ORDER_KEYS)}, optionally prefixed by '-'", "order_by"
        )
    descending = order_by.startswith("-")
    versions = list_versions(db, tenant, name)

    def value(v: ModelVersion) -> Any:
        return getattr(v, key) if key in ("version", "created_at") else final_metrics(v)[key]

    present = [v for v in versions if value(v) is not None]
    missing = [v for v in versions if value(v) is None]
    present.sort(key=lambda v: (value(v), v.version), reverse=descending)
    return present + missing


def compare(db: Database, tenant: str, name: str, refs: list[str]) -> Comparison:
    """Versions (numbers or aliases) side by side, with the hyperparameters that differ."""
    if not 2 <= len(refs) <= MAX_COMPARED:
        raise InvalidRequest(f"name 2 to {MAX_COMPARED} versions, separated by commas", "versions")
    numbers: list[int] = []
    for ref in refs:
        version = resolve_version(db, tenant, name, ref.strip())
        if version not in numbers:
            numbers.append(version)
    if len(numbers) < 2:
        raise InvalidRequest("name at least 2 different versions", "versions")
    versions = [get_version(db, tenant, name, number) for number in numbers]
    keys = sorted({k for v in versions for k in v.hyperparameters})
    differing = [k for k in keys if len({repr(v.hyperparameters.get(k)) for v in versions}) > 1]
    best = {}
    for metric, higher in METRICS.items():
        scored = [(final_metrics(v)[metric], v.version) for v in versions]
        scored = [(s, n) for s, n in scored if s is not None]
        if scored:
            best[metric] = (max if higher else min)(scored, key=lambda p: p[0])[1]
    return Comparison(name, versions, differing, best)
