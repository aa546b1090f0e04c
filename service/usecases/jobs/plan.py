"""A job submission checked against its dataset: target, features, column types, class
counts and the network's size, decided from the column facts gathered at upload (the
table is not read here). A sweep checks one plan once, then each trial's hyperparameters."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from service.config import Settings
from service.db.models import Job, JobStatus
from service.ml import DataError, tabular
from service.ml.hyperparameters import resolve_folds
from service.ml.network import count_parameters
from service.ml.preprocessing import column_width
from service.ml.tabular import ColumnType
from service.ml.training import TrainingConfig, architecture_for
from service.usecases.datasets import find_dataset
from service.usecases.errors import InvalidRequest, NotFound


@dataclass(frozen=True)
class JobRequest:
    """A validated job submission (the API schema has checked each field's own range)."""

    target: str
    model_name: str
    hyperparameters: dict[str, Any]
    dataset_id: str | None = None
    features: list[str] | None = None
    column_types: dict[str, str] | None = None


@dataclass
class JobPlan:
    """A submission checked against its dataset: what every job made from it shares.

    A sweep checks one plan once, then each trial's hyperparameters with :meth:`check`.
    """

    request: JobRequest
    dataset_id: str
    features: list[str]
    feature_types: dict[str, str]
    columns: dict[str, dict]
    target_counts: dict[str, int]  # class (as text, see preprocessing.label_key) → rows

    def check(self, settings: Settings, hyperparameters: dict[str, Any]) -> TrainingConfig:
        """The validated config of a job with these (schema-checked) hyperparameters, its
        seed drawn if unset; InvalidRequest names the hyperparameter at fault."""
        hyperparameters = dict(hyperparameters)
        if hyperparameters.get("seed") is None:
            hyperparameters["seed"] = random.randrange(2**31)
        config = TrainingConfig.from_json(hyperparameters)
        _check_class_weight(self.target_counts, self.request.target, config)
        _check_size(
            settings,
            config,
            self.feature_types,
            self.columns,
            self.request.target,
            labelled_rows=sum(self.target_counts.values()),
        )
        return config

    def add_job(
        self,
        session: Session,
        tenant: str,
        config: TrainingConfig,
        *,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> Job:
        """Store a queued job of this plan (``extra``: more columns, e.g. a sweep's)."""
        job = Job(
            tenant=tenant,
            dataset_id=self.dataset_id,
            target=self.request.target,
            features=self.features,
            feature_types=self.feature_types,
            model_name=self.request.model_name,
            hyperparameters=config.to_json(),
            epochs=config.epochs,
            idempotency_key=idempotency_key,
            status=JobStatus.QUEUED,
            cancel_requested=False,
            epoch=0,
            attempt=0,
            publish_count=0,
            **extra,
        )
        session.add(job)
        session.flush()
        return job


def plan_job(session: Session, settings: Settings, tenant: str, request: JobRequest) -> JobPlan:
    """Check the dataset, target, features and column types of a submission."""
    if request.dataset_id is None:
        raise InvalidRequest("a dataset_id or an uploaded file is required", "dataset_id")
    try:
        dataset = find_dataset(session, tenant, request.dataset_id, lock=True)
    except NotFound as exc:
        raise InvalidRequest(exc.message, "dataset_id") from None
    columns = {c["name"]: c for c in dataset.columns}
    if request.target not in columns:
        raise InvalidRequest(
            f"the dataset has no column {request.target!r}; its columns are {list(columns)}",
            "target",
        )
    features = _features(request, columns)
    feature_types = _feature_types(request, features, columns)
    changed = [n for n in features if feature_types[n] != columns[n]["type"]]
    # Decided from the column facts gathered at upload: the table is not read here.
    _check_overrides(columns, changed, feature_types)
    _check_categories(settings, features, feature_types, columns)
    target_counts = _target_counts(settings, columns[request.target], request.target)
    return JobPlan(request, dataset.id, features, feature_types, columns, target_counts)


def _feature_types(request: JobRequest, features: list[str], columns: dict[str, dict]) -> dict:
    """Inferred types with the request's ``column_types`` overrides."""
    overrides = dict(request.column_types or {})
    for name in overrides:
        if name not in features:
            raise InvalidRequest(
                f"{name!r} is not one of the job's features", f"column_types.{name}"
            )
    return {name: overrides.get(name, columns[name]["type"]) for name in features}


def _check_overrides(columns: dict[str, dict], changed: list[str], types: dict[str, str]) -> None:
    """Every overridden column must convert to its new type: numbers and booleans always
    become categories; text becomes numbers or booleans only if every value parses (known
    from the upload's value counts; a column of more distinct values than they keep was
    inferred categorical because some value is not a number, so it cannot convert)."""
    for name in changed:
        kind, column = types[name], columns[name]
        if kind == ColumnType.CATEGORICAL or column["type"] == ColumnType.BOOLEAN:
            continue  # true/false become 1/0 as numbers
        if column["type"] == ColumnType.NUMERIC:
            if not column.get("only_01", False):
                raise InvalidRequest(
                    f"column {name!r} must be 0 or 1 to be boolean; it has other numbers",
                    f"column_types.{name}",
                )
            continue
        counts = column.get("counts")
        if counts is None:
            raise InvalidRequest(
                f"column {name!r} cannot be {kind}: it has text values", f"column_types.{name}"
            )
        try:
            tabular.convert_column(pd.Series(list(counts), dtype="str"), kind, name)
        except DataError as exc:
            raise InvalidRequest(exc.message, f"column_types.{name}") from None


def _check_categories(
    settings: Settings, features: list[str], types: dict[str, str], columns: dict[str, dict]
) -> None:
    for i, name in enumerate(features):
        column = columns[name]
        if types[name] == ColumnType.CATEGORICAL and column["n_unique"] > settings.max_categories:
            raise InvalidRequest(
                f"categorical column {name!r} has {column['n_unique']} distinct values, more "
                f"than the limit of {settings.max_categories} (an id or free text?); leave it "
                "out of 'features'",
                f"features[{i}]",
            )


def _features(request: JobRequest, columns: dict[str, dict]) -> list[str]:
    if request.features is None:
        features = [name for name in columns if name != request.target]
    else:
        features = list(request.features)
        for i, name in enumerate(features):
            if name not in columns:
                raise InvalidRequest(f"the dataset has no column {name!r}", f"features[{i}]")
        if request.target in features:
            raise InvalidRequest("the target cannot also be a feature", "features")
        if len(set(features)) != len(features):
            raise InvalidRequest("a feature is listed more than once", "features")
    if not features:
        raise InvalidRequest("at least one feature column is needed", "features")
    return features


def _target_counts(settings: Settings, column: dict, target: str) -> dict[str, int]:
    """The target's class counts (from the upload), checked: 2..max_classes classes, each
    with two rows or more."""
    counts = column.get("counts")
    n_classes = len(counts) if counts is not None else column["n_unique"]
    if n_classes < 2:
        raise InvalidRequest(
            f"the target column {target!r} has {n_classes} distinct value(s); "
            "a classifier needs at least two classes",
            "target",
        )
    if counts is None or n_classes > settings.max_classes:
        raise InvalidRequest(
            f"the target column {target!r} has {n_classes} classes, more than the limit of "
            f"{settings.max_classes}",
            "target",
        )
    single = sorted(label for label, n in counts.items() if n < 2)
    if single:
        raise InvalidRequest(
            f"class {_label_repr(single[0], column['type'])} of {target!r} has a single row; "
            "the stratified validation split needs at least two rows of every class",
            "target",
        )
    return counts


def _label_repr(text: str, kind: str) -> str:
    """A class label as the messages show it (numbers as numbers)."""
    if kind == ColumnType.NUMERIC:
        return repr(float(text))
    if kind == ColumnType.BOOLEAN:
        return repr(text == "true")
    return repr(text)


def _check_class_weight(counts: dict[str, int], target: str, config: TrainingConfig) -> None:
    if isinstance(config.class_weight, dict):
        classes = set(counts)
        for key in config.class_weight:
            if key not in classes:
                raise InvalidRequest(
                    f"{key!r} is not a class of {target!r}; the classes are {sorted(classes)}",
                    f"hyperparameters.class_weight.{key}",
                )


def _check_size(
    settings: Settings,
    config: TrainingConfig,
    types: dict[str, str],
    columns: dict[str, dict],
    target: str,
    labelled_rows: int,
) -> None:
    if config.epochs > settings.max_epochs:
        raise InvalidRequest(f"must be at most {settings.max_epochs}", "hyperparameters.epochs")
    # At most the encoder's width: every category kept, an indicator where values are missing.
    n_inputs = sum(
        column_width(kind, columns[name]["n_unique"], columns[name]["missing"] > 0)
        for name, kind in types.items()
    )
    # Numeric columns are embedded by the tabular network (0/1 columns are not, so this
    # bound may count a few inputs too many); bagging trains one member per fold, as many
    # as the job will (the target's class counts are every labelled row).
    numeric = tuple(range(sum(kind == ColumnType.NUMERIC for kind in types.values())))
    folds = resolve_folds(config.folds, labelled_rows)
    arch = architecture_for(config, n_inputs, columns[target]["n_unique"], numeric, folds=folds)
    n_params = count_parameters(arch)
    if n_params > settings.max_parameters:
        raise InvalidRequest(
            f"the network would have {n_params:,} parameters, more than the limit of "
            f"{settings.max_parameters:,}",
            "hyperparameters.hidden_layers",
        )
