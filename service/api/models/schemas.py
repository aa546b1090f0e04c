"""Model schemas: summaries and versions out; predict requests in, predictions out."""

from marshmallow import fields, validate

from service.api.common import BaseSchema


class ModelSummarySchema(BaseSchema):
    name = fields.String()
    latest_version = fields.Integer()
    n_versions = fields.Integer()
    updated_at = fields.DateTime()


class InputColumnSchema(BaseSchema):
    name = fields.String()
    type = fields.String(metadata={"enum": ["numeric", "categorical", "boolean"]})
    categories = fields.List(fields.String())


class ModelVersionSchema(BaseSchema):
    name = fields.String()
    version = fields.Integer()
    job_id = fields.String()
    dataset_id = fields.String()
    target = fields.String()
    classes = fields.List(fields.Raw())
    features = fields.List(fields.String())
    input_schema = fields.List(fields.Nested(InputColumnSchema))
    hyperparameters = fields.Dict()
    metrics = fields.Dict()
    weights_sha256 = fields.String()
    created_at = fields.DateTime()


class ModelSchema(BaseSchema):
    name = fields.String()
    versions = fields.List(fields.Nested(ModelVersionSchema))


class PredictRequestSchema(BaseSchema):
    records = fields.List(
        fields.Dict(keys=fields.String()),
        required=True,
        validate=validate.Length(min=1),
        metadata={"description": "One object per row: feature column → value"},
    )


class RowPredictionSchema(BaseSchema):
    label = fields.Raw(metadata={"description": "The most probable class"})
    probabilities = fields.Dict(keys=fields.String(), values=fields.Float())


class ModelRefSchema(BaseSchema):
    name = fields.String()
    version = fields.Integer()


class PredictionSchema(BaseSchema):
    model = fields.Nested(ModelRefSchema)
    classes = fields.List(fields.Raw())
    predictions = fields.List(fields.Nested(RowPredictionSchema))
