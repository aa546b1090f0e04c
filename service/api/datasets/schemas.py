"""Dataset schemas: upload in, dataset out."""

from marshmallow import fields, validate

from service.api.schemas import DATASET_NAME, BaseSchema, PageArgsSchema
from service.ml.tabular import COLUMN_TYPES


class DatasetUploadSchema(BaseSchema):
    name = fields.String(validate=DATASET_NAME)
    records = fields.List(
        fields.Dict(keys=fields.String()), required=True, validate=validate.Length(min=1)
    )


class DatasetQueryArgsSchema(PageArgsSchema):
    pass


class DatasetNameArgsSchema(BaseSchema):
    name = fields.String(validate=DATASET_NAME)


class ColumnSchema(BaseSchema):
    name = fields.String()
    type = fields.String(metadata={"enum": list(COLUMN_TYPES)})
    missing = fields.Integer()
    n_unique = fields.Integer()


class DatasetSchema(BaseSchema):
    id = fields.String()
    name = fields.String()
    n_rows = fields.Integer()
    n_columns = fields.Integer()
    size_bytes = fields.Integer()
    columns = fields.List(fields.Nested(ColumnSchema))
    created_at = fields.DateTime()
