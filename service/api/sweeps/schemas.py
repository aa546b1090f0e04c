"""Sweep schemas: the submission (with its search space) in; the sweep and leaderboard out.

The submission's shape is checked here; the sweeps use case expands its search into
trials and checks each trial's hyperparameters (``service.usecases.search.expand``).
"""

from __future__ import annotations

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from service.api.schemas import MODEL_NAME, BaseSchema, PageArgsSchema
from service.db.models import JOB_STATUSES, SWEEP_STATUSES
from service.ml.tabular import COLUMN_TYPES
from service.usecases.aliases import ALIAS_PATTERN, ALIAS_RULE
from service.usecases.search import MAX_TRIALS
from service.usecases.stopping import RULES, StoppingRule
from service.usecases.sweeps import METRICS

_RANGE_DOC = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}


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
        values=fields.String(validate=validate.OneOf(list(COLUMN_TYPES))),
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
