"""Alias and comparison schemas."""

from marshmallow import fields, validate

from service.api.schemas import BaseSchema
from service.usecases.compare import ORDER_KEYS, final_metrics


class AliasSetSchema(BaseSchema):
    version = fields.Integer(required=True, validate=validate.Range(1, 2**31 - 1))


class AliasSchema(BaseSchema):
    name = fields.String()
    alias = fields.String()
    version = fields.Integer()
    updated_at = fields.DateTime()


class VersionOrderArgsSchema(BaseSchema):
    order_by = fields.String(
        load_default="-version",
        validate=validate.Length(1, 32),
        metadata={
            "description": f"One of {', '.join(ORDER_KEYS)}; ascending, or descending with "
            "a '-' prefix (e.g. -val_accuracy: best accuracy first)"
        },
    )


class CompareArgsSchema(BaseSchema):
    versions = fields.String(
        required=True,
        validate=validate.Length(1, 1000),
        metadata={"description": "Two or more version numbers or aliases, comma-separated"},
    )


class ComparedVersionSchema(BaseSchema):
    version = fields.Integer()
    job_id = fields.String()
    created_at = fields.DateTime()
    metrics = fields.Function(
        final_metrics,
        metadata={"type": "object", "description": "Final metrics (null where not measured)"},
    )
    hyperparameters = fields.Dict()


class ComparisonSchema(BaseSchema):
    name = fields.String()
    versions = fields.List(fields.Nested(ComparedVersionSchema))
    differing_hyperparameters = fields.List(fields.String())
    best = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={"description": "metric → the version best at it"},
    )
