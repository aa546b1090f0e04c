"""Evaluate schemas: labelled records and the target's name in; metrics out."""

from marshmallow import fields, validate

from service.api.models.schemas import ModelRefSchema
from service.api.schemas import BaseSchema


class EvaluateArgsSchema(BaseSchema):
    target = fields.String(
        validate=validate.Length(1, 255),
        metadata={"description": "The column of true labels; default: the model's target"},
    )


class EvaluateRequestSchema(BaseSchema):
    records = fields.List(
        fields.Dict(keys=fields.String()),
        required=True,
        validate=validate.Length(min=1),
        metadata={"description": "One object per row: the features and the true label"},
    )


class ClassMetricsSchema(BaseSchema):
    precision = fields.Float()
    recall = fields.Float()
    f1 = fields.Float()
    support = fields.Integer()


class ConfusionMatrixSchema(BaseSchema):
    labels = fields.List(fields.String())
    rows_are = fields.String()
    columns_are = fields.String()
    counts = fields.List(fields.List(fields.Integer()))


class ReliabilityBinSchema(BaseSchema):
    lower = fields.Float()
    upper = fields.Float()
    count = fields.Integer()
    confidence = fields.Float(
        allow_none=True, metadata={"description": "Mean top probability in the bin"}
    )
    accuracy = fields.Float(allow_none=True, metadata={"description": "Share right in the bin"})


class EvaluationSchema(BaseSchema):
    model = fields.Nested(ModelRefSchema)
    target = fields.String()
    rows = fields.Integer(metadata={"description": "Rows compared"})
    skipped_rows = fields.Integer(metadata={"description": "Rows left out: no label"})
    accuracy = fields.Float()
    macro_f1 = fields.Float(metadata={"description": "Mean F1 of the classes present"})
    log_loss = fields.Float(metadata={"description": "Mean -log p(true class), p clipped 1e-15"})
    ece = fields.Float(
        metadata={
            "description": "Expected calibration error, 15 equal-width bins of the top probability"
        }
    )
    per_class = fields.Dict(keys=fields.String(), values=fields.Nested(ClassMetricsSchema))
    confusion_matrix = fields.Nested(ConfusionMatrixSchema)
    reliability = fields.List(
        fields.Nested(ReliabilityBinSchema),
        metadata={"description": "The reliability diagram: the 15 bins of the ECE"},
    )
