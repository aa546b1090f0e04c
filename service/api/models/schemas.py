"""Model schemas: summaries and versions out; predict requests in, predictions out."""

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from service.api.schemas import BaseSchema
from service.ml.tabular import COLUMN_TYPES


class ModelSummarySchema(BaseSchema):
    name = fields.String()
    latest_version = fields.Integer()
    n_versions = fields.Integer()
    updated_at = fields.DateTime()


class InputColumnSchema(BaseSchema):
    name = fields.String()
    type = fields.String(metadata={"enum": list(COLUMN_TYPES)})
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
    aliases = fields.Dict(
        keys=fields.String(), values=fields.Integer(), metadata={"description": "alias → version"}
    )


class DataframeSplitSchema(BaseSchema):
    columns = fields.List(fields.String(), required=True)
    data = fields.List(fields.List(fields.Raw()), required=True, validate=validate.Length(min=1))
    index = fields.List(fields.Raw())


PREDICT_FORMATS = ("records", "dataframe_records", "dataframe_split", "inputs")


class PredictRequestSchema(BaseSchema):
    """trainserve's ``records``, or one of MLflow's scoring formats; loads as ``records``."""

    records = fields.List(
        fields.Dict(keys=fields.String()),
        validate=validate.Length(min=1),
        metadata={"description": "One object per row: feature column → value"},
    )
    dataframe_records = fields.List(
        fields.Dict(keys=fields.String()),
        validate=validate.Length(min=1),
        metadata={"description": "MLflow: the same as records"},
    )
    dataframe_split = fields.Nested(
        DataframeSplitSchema,
        metadata={"description": "MLflow: {columns: [...], data: [[row], ...]}"},
    )
    inputs = fields.Raw(
        metadata={
            "description": "MLflow: {column: [values, ...]} or a list of records",
            "oneOf": [
                {"type": "object", "additionalProperties": {"type": "array", "items": {}}},
                {"type": "array", "items": {"type": "object"}},
            ],
        }
    )

    @validates_schema
    def _exactly_one_format(self, data, **_kwargs):
        given = [name for name in PREDICT_FORMATS if name in data]
        if len(given) != 1:
            raise ValidationError(
                "send exactly one of "
                + ", ".join(PREDICT_FORMATS)
                + (f" (got {', '.join(given)})" if given else "")
            )

    @post_load
    def _as_records(self, data, **_kwargs):
        if "records" in data:
            return {"records": data["records"]}
        if "dataframe_records" in data:
            return {"records": data["dataframe_records"]}
        if "dataframe_split" in data:
            split = data["dataframe_split"]
            width = len(split["columns"])
            for i, row in enumerate(split["data"]):
                if len(row) != width:
                    raise ValidationError(
                        f"has {len(row)} values; columns has {width}",
                        f"dataframe_split.data[{i}]",
                    )
            return {
                "records": [dict(zip(split["columns"], row, strict=True)) for row in split["data"]]
            }
        return {"records": _records_from_inputs(data["inputs"])}


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


def _records_from_inputs(inputs) -> list[dict]:
    if isinstance(inputs, list) and inputs and all(isinstance(r, dict) for r in inputs):
        return inputs
    if isinstance(inputs, dict) and inputs and all(isinstance(v, list) for v in inputs.values()):
        lengths = {len(v) for v in inputs.values()}
        if len(lengths) != 1 or 0 in lengths:
            raise ValidationError(
                "every column must have the same, non-zero number of values", "inputs"
            )
        columns = list(inputs)
        return [dict(zip(columns, row, strict=True)) for row in zip(*inputs.values(), strict=True)]
    raise ValidationError(
        "must be {column: [values, ...]} or a non-empty list of records", "inputs"
    )
