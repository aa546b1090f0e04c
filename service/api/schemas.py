"""What every resource's schemas share: the base schema, paging, the problem body, and
the validators of names."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

MODEL_NAME = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
    error="must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
)

DATASET_NAME = validate.And(
    validate.Length(1, 255),
    validate.Predicate("isprintable", error="must not contain control characters"),
)


class BaseSchema(Schema):
    """Unknown fields are errors, never silently dropped."""

    class Meta:
        unknown = RAISE


class PageArgsSchema(BaseSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 1_000_000_000))


class ProblemSchema(Schema):
    """An RFC 9457 problem, as every error is answered."""

    type = fields.String(metadata={"description": "A URI for the kind of problem"})
    title = fields.String(metadata={"description": "The HTTP status phrase"})
    status = fields.Integer()
    detail = fields.String(metadata={"description": "What went wrong, for a person"})
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "Field path (e.g. hyperparameters.epochs) → messages"},
    )
    scope = fields.String(
        metadata={"description": "On a 403: the API key scope the request needs"}
    )
