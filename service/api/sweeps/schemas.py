"""Sweep schemas: the submission (with its search space) in; the sweep and leaderboard out.

Loading a submission expands its search into trials and checks every trial's
hyperparameters with the job schema, so a bad value is a 400 naming where it came
from (``search.grid.learning_rate[1]``) before anything is stored.
"""

from __future__ import annotations

import math
import random

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from service.api.common import MODEL_NAME, BaseSchema, PageArgsSchema
from service.api.jobs.schemas import HyperparametersSchema
from service.db.models import JOB_STATUSES, SWEEP_STATUSES
from service.errors import flatten_messages
from service.usecases.aliases import ALIAS_PATTERN, ALIAS_RULE
from service.usecases.search import (
    DISTRIBUTIONS,
    MAX_TRIALS,
    grid_size,
    grid_trials,
    random_trials,
    source_field,
)
from service.usecases.stopping import RULES, StoppingRule
from service.usecases.sweeps import METRICS

_RANGE_DOC = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}


def _finite(number: int | float) -> bool:
    """A finite float, or an int a float can hold (``math.isfinite`` raises beyond that)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


class Distribution(fields.Field):
    """``{"uniform" | "log_uniform" | "int": [low, high]}`` or ``{"choice": [values]}``."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, dict) or len(value) != 1:
            raise ValidationError(f"must be an object with one key: one of {list(DISTRIBUTIONS)}")
        ((kind, args),) = value.items()
        if kind not in DISTRIBUTIONS:
            raise ValidationError(
                f"{kind!r} is not a distribution; use one of {list(DISTRIBUTIONS)}"
            )
        if kind == "choice":
            if not isinstance(args, list) or not 1 <= len(args) <= MAX_TRIALS:
                raise ValidationError(f"choice must be a list of 1 to {MAX_TRIALS} values")
            return {kind: args}
        number = int if kind == "int" else (int, float)
        if (
            not isinstance(args, list)
            or len(args) != 2
            or any(isinstance(a, bool) or not isinstance(a, number) for a in args)
            or any(not _finite(a) for a in args)
        ):
            what = "integers" if kind == "int" else "finite numbers"
            raise ValidationError(f"{kind} must be [low, high], two {what}")
        low, high = args
        if low > high:
            raise ValidationError(f"{kind}: low must not be greater than high")
        if kind == "log_uniform" and low <= 0:
            raise ValidationError("log_uniform: low must be greater than 0")
        return {kind: [low, high]}


class RandomSearchSchema(BaseSchema):
    n_trials = fields.Integer(required=True, validate=validate.Range(1, MAX_TRIALS))
    seed = fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(0, 2**31 - 1),
        metadata={"description": "Seed of the draws; null: one is drawn and stored"},
    )
    parameters = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(
            metadata={
                "type": "object",
                "description": '{"uniform": [lo, hi]}, {"log_uniform": [lo, hi]}, '
                '{"int": [lo, hi]} or {"choice": [v, ...]}',
                "properties": {
                    "uniform": _RANGE_DOC,
                    "log_uniform": _RANGE_DOC,
                    "int": _RANGE_DOC,
                    "choice": {"type": "array", "items": {}},
                },
            }
        ),
        required=True,
        validate=validate.Length(min=1),
    )


class SearchSchema(BaseSchema):
    grid = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.Raw()),
        validate=validate.Length(min=1),
        metadata={"description": "hyperparameter → values; every combination is a trial"},
    )
    random = fields.Nested(RandomSearchSchema)

    @validates_schema
    def _exactly_one(self, data, **_kwargs):
        if ("grid" in data) == ("random" in data):
            raise ValidationError("give exactly one of grid or random")


class EarlyStoppingSchema(BaseSchema):
    rule = fields.String(
        load_default=StoppingRule.rule,
        validate=validate.OneOf(RULES),
        metadata={"description": "median stopping, asha (successive halving), or none"},
    )
    grace_epochs = fields.Integer(
        load_default=StoppingRule.grace_epochs,
        validate=validate.Range(1, 10_000),
        metadata={"description": "No trial is stopped before this epoch"},
    )
    min_trials = fields.Integer(
        load_default=StoppingRule.min_trials,
        validate=validate.Range(1, MAX_TRIALS),
        metadata={"description": "Other trials needed at an epoch before comparing"},
    )
    reduction_factor = fields.Integer(
        load_default=StoppingRule.reduction_factor,
        validate=validate.Range(2, 16),
        metadata={"description": "asha: keep the top 1/reduction_factor at each rung"},
    )

    @post_load
    def _rule(self, data, **_kwargs):
        return StoppingRule(**data)


class SweepCreateSchema(BaseSchema):
    dataset_id = fields.String(required=True, validate=validate.Length(1, 36))
    target = fields.String(required=True, validate=validate.Length(1, 255))
    features = fields.List(
        fields.String(validate=validate.Length(1, 255)), validate=validate.Length(min=1)
    )
    column_types = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=validate.OneOf(["numeric", "categorical", "boolean"])),
    )
    model_name = fields.String(required=True, validate=MODEL_NAME)
    hyperparameters = fields.Dict(
        load_default=dict,
        metadata={"description": "Base hyperparameters (as a job's); the search overrides them"},
    )
    search = fields.Nested(SearchSchema, required=True)
    metric = fields.String(load_default="val_loss", validate=validate.OneOf(list(METRICS)))
    mode = fields.String(
        validate=validate.OneOf(["min", "max"]),
        metadata={"description": "Default: min for losses, max for accuracies"},
    )
    max_parallel = fields.Integer(
        load_default=2,
        validate=validate.Range(1, 1000),
        metadata={"description": "Trials queued or running at once"},
    )
    early_stopping = fields.Nested(EarlyStoppingSchema, load_default=StoppingRule)
    promote_to = fields.String(
        validate=validate.Regexp(ALIAS_PATTERN, error=ALIAS_RULE),
        metadata={"description": "Alias given to the winner's model version when the sweep ends"},
    )

    @post_load
    def _expand(self, data, **_kwargs):
        base = data["hyperparameters"]
        loaded = _hyperparameters(base, lambda path: path)
        search = data["search"]
        if "grid" in search:
            trials = _grid(base, search["grid"])
        else:
            if search["random"]["seed"] is None:
                search["random"]["seed"] = random.randrange(2**31)
            trials = _random(base, search["random"])
        checked = []
        for values in trials:
            full = _hyperparameters(
                {**base, **values}, lambda name, v=values: source_field(search, name, v)
            )
            checked.append({name: full[name] for name in values})
        return {**data, "hyperparameters": loaded, "trials": checked}


def _hyperparameters(raw: dict, where) -> dict:
    """``raw`` loaded by the job schema; errors named by ``where(field path)``."""
    try:
        return HyperparametersSchema().load(raw)
    except ValidationError as exc:
        errors = flatten_messages(exc.messages)
        raise ValidationError(
            {where(f"hyperparameters.{path}") or path: m for path, m in errors.items()}
        ) from None


def _check_names(names, prefix: str) -> None:
    known = HyperparametersSchema().fields
    for name in names:
        if name not in known:
            raise ValidationError({f"{prefix}.{name}": ["not a hyperparameter"]})


def _grid(base: dict, grid: dict) -> list[dict]:
    _check_names(grid, "search.grid")
    for name, values in grid.items():
        if not values:
            raise ValidationError({f"search.grid.{name}": ["must list at least one value"]})
    if grid_size(grid) > MAX_TRIALS:
        raise ValidationError(
            {"search.grid": [f"makes {grid_size(grid)} trials; at most {MAX_TRIALS}"]}
        )
    for name, values in grid.items():
        for i, value in enumerate(values):
            _hyperparameters({**base, name: value}, lambda _f, n=name, i=i: f"search.grid.{n}[{i}]")
    return grid_trials(grid)


def _random(base: dict, search: dict) -> list[dict]:
    prefix = "search.random.parameters"
    _check_names(search["parameters"], prefix)
    for name, spec in search["parameters"].items():
        try:
            spec = search["parameters"][name] = Distribution().deserialize(spec)
        except ValidationError as exc:
            raise ValidationError({f"{prefix}.{name}": exc.messages}) from None
        ((kind, args),) = spec.items()
        for i, value in enumerate(args):
            _hyperparameters(
                {**base, name: value}, lambda _f, n=name, k=kind, i=i: f"{prefix}.{n}.{k}[{i}]"
            )
    return random_trials(search["parameters"], search["n_trials"], search["seed"])


class SweepQueryArgsSchema(PageArgsSchema):
    status = fields.String(validate=validate.OneOf(SWEEP_STATUSES))


class TrialSchema(BaseSchema):
    trial = fields.Integer(metadata={"description": "Trial number, from 0"})
    hyperparameters = fields.Dict(metadata={"description": "The searched values of this trial"})
    status = fields.String(metadata={"enum": ["pending", *JOB_STATUSES]})
    job_id = fields.String(allow_none=True)
    value = fields.Float(
        allow_none=True, metadata={"description": "Best value of the metric over its epochs"}
    )
    best_epoch = fields.Integer(allow_none=True)
    epoch = fields.Integer(metadata={"description": "Epochs finished"})
    epochs = fields.Integer(allow_none=True)
    stopped_early = fields.Boolean()
    stopped_at_epoch = fields.Integer(allow_none=True)
    stop_reason = fields.String(allow_none=True)
    model_version = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class SweepSummarySchema(BaseSchema):
    id = fields.String()
    status = fields.String(metadata={"enum": list(SWEEP_STATUSES)})
    dataset_id = fields.String(allow_none=True)
    target = fields.String()
    features = fields.List(fields.String(), allow_none=True)
    model_name = fields.String()
    hyperparameters = fields.Dict()
    search = fields.Dict()
    metric = fields.String()
    mode = fields.String()
    max_parallel = fields.Integer()
    early_stopping = fields.Dict()
    promote_to = fields.String(allow_none=True)
    cancel_requested = fields.Boolean()
    n_trials = fields.Integer()
    trials_created = fields.Integer(attribute="created_trials")
    counts = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={"description": "Trials per status (pending: not created yet), and stopped_early"},
    )
    best = fields.Nested(
        TrialSchema, allow_none=True, metadata={"description": "The leading trial so far"}
    )
    winner = fields.Method("_winner", allow_none=True, metadata={"type": "object"})
    error = fields.Dict(allow_none=True)
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)

    def _winner(self, report):
        if report.winner_version is None:
            return None
        return {
            "job_id": report.winner_job_id,
            "model": {"name": report.model_name, "version": report.winner_version},
            "promoted_to": report.promote_to,
        }


class SweepSchema(SweepSummarySchema):
    leaderboard = fields.List(
        fields.Nested(TrialSchema),
        metadata={"description": "Every trial, best first by the metric; unscored ones last"},
    )
