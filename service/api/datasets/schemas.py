"""Dataset schemas: upload in, dataset out."""

import json

from marshmallow import ValidationError, fields, validate

from service.api.schemas import DATASET_NAME, BaseSchema, PageArgsSchema
from service.ml.tabular import COLUMN_TYPES


class DatasetUploadSchema(BaseSchema):
    name = fields.String(validate=DATASET_NAME)
    records = fields.List(
        fields.Dict(keys=fields.String()), required=True, validate=validate.Length(min=1)
    )


class DatasetQueryArgsSchema(PageArgsSchema):
    pass


class ColumnTypesField(fields.Field):
    """A JSON object of column → type in a query string."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            types = json.loads(value)
        except ValueError as exc:
            raise ValidationError(f"is not valid JSON: {exc}") from None
        if not isinstance(types, dict) or not all(
            isinstance(v, str) and v in COLUMN_TYPES for v in types.values()
        ):
            raise ValidationError(
                "must be a JSON object of column name: numeric, categorical or boolean"
            )
        return types


class DatasetNameArgsSchema(BaseSchema):
    name = fields.String(validate=DATASET_NAME)
    column_types = ColumnTypesField(
        metadata={
            "description": 'Types to use instead of inferring them, e.g. {"zip": "categorical"}'
        }
    )


class ColumnSchema(BaseSchema):
    name = fields.String()
    type = fields.String(metadata={"enum": list(COLUMN_TYPES)})
    missing = fields.Integer()
    n_unique = fields.Integer(
        metadata={"description": "Exact up to 1000 distinct values, else an estimate (±2%)"}
    )
    summary = fields.Dict(
        metadata={
            "description": "numeric: min, max, mean, std; categorical and boolean: counts "
            "(the 20 most frequent values) and other (the count of all the rest)"
        }
    )


class DatasetSchema(BaseSchema):
    id = fields.String()
    name = fields.String()
    n_rows = fields.Integer()
    n_columns = fields.Integer()
    size_bytes = fields.Integer()
    columns = fields.List(fields.Nested(ColumnSchema))
    created_at = fields.DateTime()
