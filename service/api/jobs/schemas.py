"""Job schemas: hyperparameters and submission in; job, metrics out."""

from marshmallow import ValidationError, fields, pre_load, validate

from service.api.schemas import MODEL_NAME, BaseSchema, PageArgsSchema
from service.db.models import JOB_STATUSES
from service.errors import flatten_messages
from service.ml.device import GPU_BATCH_SIZE
from service.ml.hyperparameters import HYPERPARAMETERS, Hyperparameter, Kind
from service.ml.tabular import COLUMN_TYPES
from service.usecases.errors import InvalidFields


class ClassWeight(fields.Field):
    """``"balanced"`` or a mapping of class label (text) to a positive weight."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value == "balanced":
            return value
        if not isinstance(value, dict) or not value:
            raise ValidationError("must be 'balanced' or an object of class: weight")
        weights = {}
        for key, weight in value.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise ValidationError(f"the weight of {key!r} must be a number")
            if not (0 < weight <= 1e6) or weight != weight:
                raise ValidationError(f"the weight of {key!r} must be > 0 and at most 1e6")
            weights[str(key)] = float(weight)
        return weights


class IntegerOrAuto(fields.Field):
    """An integer within bounds, or ``"auto"``."""

    def __init__(self, low: int, high: int, **kwargs):
        super().__init__(**kwargs)
        self.low, self.high = low, high

    def _deserialize(self, value, attr, data, **kwargs):
        if value == "auto":
            return value
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not self.low <= value <= self.high
        ):
            raise ValidationError(f"must be an integer from {self.low} to {self.high}, or 'auto'")
        return value


def _field(h: Hyperparameter) -> fields.Field:
    """The marshmallow field of one row of the hyperparameter table."""
    common: dict = {"load_default": h.default, "metadata": {"description": h.help}}
    if h.nullable or h.recipe:
        common["allow_none"] = True
    bounds = validate.Range(
        h.minimum,
        h.maximum,
        min_inclusive=not h.exclusive_minimum,
        max_inclusive=not h.exclusive_maximum,
    )
    if h.kind is Kind.INT_LIST:
        default = None if h.default is None else list(h.default)
        return fields.List(
            fields.Integer(validate=bounds),
            **{**common, "load_default": default},
            validate=validate.Length(max=h.max_items),
        )
    if h.kind is Kind.INT_OR_AUTO:
        common["metadata"]["oneOf"] = [
            {"type": "integer", "minimum": h.minimum, "maximum": h.maximum},
            {"type": "string", "enum": ["auto"]},
        ]
        return IntegerOrAuto(int(h.minimum), int(h.maximum), **common)
    if h.kind is Kind.CLASS_WEIGHT:
        common["metadata"]["oneOf"] = [
            {"type": "string", "enum": ["balanced"]},
            {"type": "object", "additionalProperties": {"type": "number"}},
        ]
        return ClassWeight(**common)
    if h.kind is Kind.CHOICE:
        return fields.String(validate=validate.OneOf(list(h.choices)), **common)
    if h.kind is Kind.BOOL:
        return fields.Boolean(**common)
    number = fields.Integer if h.kind is Kind.INT else fields.Float
    return number(validate=bounds, **common)


class HyperparametersSchema(
    BaseSchema.from_dict({h.name: _field(h) for h in HYPERPARAMETERS}, name="_Hyperparameters")
):
    """Every knob of the network and its training, each with a default: one field per row
    of ``service.ml.hyperparameters.HYPERPARAMETERS``."""

    @pre_load
    def _gpu_batch_size(self, data, **_kwargs):
        # A GPU job that does not choose its batch gets a larger one (bench/gpu.py).
        if isinstance(data, dict) and data.get("device") == "gpu" and "batch_size" not in data:
            data = {**data, "batch_size": GPU_BATCH_SIZE}
        return data


def load_hyperparameters(raw: dict) -> dict:
    """``raw`` loaded by :data:`HyperparametersSchema`; InvalidFields names each bad
    value by its path (how the sweeps use case checks every trial)."""
    try:
        return HyperparametersSchema().load(raw)
    except ValidationError as exc:
        raise InvalidFields(flatten_messages(exc.messages)) from None


class JobCreateSchema(BaseSchema):
    dataset_id = fields.String(metadata={"description": "Required unless a file is uploaded"})
    target = fields.String(required=True, validate=validate.Length(1, 255))
    features = fields.List(
        fields.String(validate=validate.Length(1, 255)),
        validate=validate.Length(min=1),
        metadata={"description": "Default: every column but the target"},
    )
    model_name = fields.String(required=True, validate=MODEL_NAME)
    column_types = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=validate.OneOf(list(COLUMN_TYPES))),
        metadata={
            "description": 'Override inferred feature types, e.g. {"grade": "categorical"} '
            "for an integer-coded category"
        },
    )
    hyperparameters = fields.Nested(
        HyperparametersSchema, load_default=lambda: HyperparametersSchema().load({})
    )


class JobQueryArgsSchema(PageArgsSchema):
    status = fields.String(validate=validate.OneOf(JOB_STATUSES))
    model_name = fields.String()
    dataset_id = fields.String()


class EpochMetricSchema(BaseSchema):
    epoch = fields.Integer()
    train_loss = fields.Float()
    train_accuracy = fields.Float(allow_none=True)
    val_loss = fields.Float(allow_none=True)
    val_accuracy = fields.Float(allow_none=True)
    learning_rate = fields.Float()
    duration_s = fields.Float()
    samples_per_s = fields.Float(allow_none=True)


class MetricsSchema(BaseSchema):
    epochs = fields.List(fields.Nested(EpochMetricSchema))


class ModelRefSchema(BaseSchema):
    name = fields.String()
    version = fields.Integer()


class JobErrorSchema(BaseSchema):
    type = fields.String()
    message = fields.String()


class JobSchema(BaseSchema):
    id = fields.String()
    status = fields.String(metadata={"enum": list(JOB_STATUSES)})
    dataset_id = fields.String(allow_none=True)
    target = fields.String()
    features = fields.List(fields.String())
    model_name = fields.String()
    hyperparameters = fields.Dict()
    epoch = fields.Integer(metadata={"description": "Epochs finished so far"})
    epochs = fields.Integer()
    attempt = fields.Integer()
    cancel_requested = fields.Boolean()
    latest = fields.Nested(EpochMetricSchema, allow_none=True)
    model = fields.Method("_model", allow_none=True, metadata={"type": "object"})
    error = fields.Nested(JobErrorSchema, allow_none=True)
    notes = fields.List(
        fields.String(),
        allow_none=True,
        metadata={"description": "What training decided about the data (dropped columns, ...)"},
    )
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    sweep_id = fields.String(allow_none=True, metadata={"description": "Set on a sweep's trials"})
    trial = fields.Integer(allow_none=True)
    stopped_early = fields.Boolean(
        metadata={"description": "Ended by its sweep's early-termination rule (see stop_reason)"}
    )
    stop_reason = fields.String(allow_none=True)

    def _model(self, job):
        if job.model_version is None:
            return None
        return {"name": job.model_name, "version": job.model_version}
