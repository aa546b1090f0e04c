"""Export query arguments."""

from marshmallow import fields, validate

from service.api.schemas import BaseSchema
from service.ml.export import FORMATS


class ExportArgsSchema(BaseSchema):
    format = fields.String(
        load_default="safetensors",
        validate=validate.OneOf(FORMATS),
        metadata={"description": "safetensors (weights), onnx or torchscript (network + softmax)"},
    )
