"""Job schemas: hyperparameters and submission in; job, metrics out."""

from marshmallow import ValidationError, fields, validate

from service.api.common import MODEL_NAME, BaseSchema, PageArgsSchema
from service.db.models import JOB_STATUSES
from service.ml.network import ACTIVATIONS, EMBEDDINGS, KINDS
from service.ml.recipes import DEFAULT_RECIPE, RECIPE_NAMES
from service.ml.training import (
    BEST_EPOCH_METRICS,
    DROPOUT_SCHEDULES,
    LR_SCHEDULERS,
    OPTIMIZERS,
    TrainingConfig,
)

_D = TrainingConfig()


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
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"must be an integer from {self.low} to {self.high}, or 'auto'")
        if not self.low <= value <= self.high:
            raise ValidationError(f"must be an integer from {self.low} to {self.high}, or 'auto'")
        return value


class HyperparametersSchema(BaseSchema):
    """Every knob of the network and its training, each with a default."""

    recipe = fields.String(
        load_default=DEFAULT_RECIPE,
        validate=validate.OneOf(RECIPE_NAMES),
        metadata={
            "description": "Defaults for the knobs marked 'null: the recipe's': tabular "
            "(the default: embeddings, ensemble, calibrated) or plain (a small MLP, fast)"
        },
    )
    network = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.OneOf(KINDS),
        metadata={"description": "mlp or tabular; null: the recipe's"},
    )
    hidden_layers = fields.List(
        fields.Integer(validate=validate.Range(1, 8192)),
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=16),
        metadata={
            "description": "Width of each hidden layer, input side first; null: the recipe's"
        },
    )
    activation = fields.String(
        load_default=None, allow_none=True, validate=validate.OneOf(list(ACTIVATIONS))
    )
    dropout = fields.Float(
        load_default=None,
        allow_none=True,
        validate=validate.Range(0.0, 1.0, max_inclusive=False),
    )
    batch_norm = fields.Boolean(
        load_default=_D.batch_norm,
        metadata={"description": "Batch normalisation after each hidden Linear layer"},
    )
    optimizer = fields.String(load_default=_D.optimizer, validate=validate.OneOf(OPTIMIZERS))
    learning_rate = fields.Float(
        load_default=None,
        allow_none=True,
        validate=validate.Range(0.0, 10.0, min_inclusive=False),
    )
    momentum = fields.Float(load_default=_D.momentum, validate=validate.Range(0.0, 1.0))
    weight_decay = fields.Float(load_default=_D.weight_decay, validate=validate.Range(0.0, 1.0))
    batch_size = IntegerOrAuto(
        1,
        65536,
        load_default=None,
        allow_none=True,
        metadata={
            "description": "Rows per step: 1 to 65536, or 'auto' (256, fewer on tables "
            "under 2,048 training rows); null: the recipe's",
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": 65536},
                {"type": "string", "enum": ["auto"]},
            ],
        },
    )
    # The upper bound is TRAINSERVE_MAX_EPOCHS, checked at submit time.
    epochs = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1))
    validation_fraction = fields.Float(
        load_default=_D.validation_fraction, validate=validate.Range(0.05, 0.5)
    )
    early_stopping = fields.Boolean(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "Stop when the validation loss stops improving; null: the recipe's"
        },
    )
    early_stopping_patience = fields.Integer(
        load_default=_D.early_stopping_patience,
        allow_none=True,
        validate=validate.Range(0, 10_000),
        metadata={
            "description": "Stop after this many epochs without a better validation loss "
            "and keep the best epoch's weights; null: off"
        },
    )
    min_delta = fields.Float(
        load_default=_D.min_delta,
        validate=validate.Range(0.0, 1e6),
        metadata={"description": "Smallest fall of the validation loss that counts as better"},
    )
    gradient_clip = fields.Float(
        load_default=None,
        allow_none=True,
        validate=validate.Range(0.0, 1e6, min_inclusive=False),
        metadata={"description": "Clip the gradients' global norm to this; null: off"},
    )
    class_weight = ClassWeight(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "null, 'balanced' (inverse class frequency), or {class: weight}",
            "oneOf": [
                {"type": "string", "enum": ["balanced"]},
                {"type": "object", "additionalProperties": {"type": "number"}},
            ],
        },
    )
    lr_scheduler = fields.String(
        load_default=None, allow_none=True, validate=validate.OneOf(LR_SCHEDULERS)
    )
    lr_step_size = fields.Integer(load_default=_D.lr_step_size, validate=validate.Range(1, 10_000))
    lr_gamma = fields.Float(
        load_default=_D.lr_gamma, validate=validate.Range(0.0, 1.0, min_inclusive=False)
    )
    adam_beta2 = fields.Float(
        load_default=None, allow_none=True, validate=validate.Range(0.0, 1.0, max_inclusive=False)
    )
    label_smoothing = fields.Float(
        load_default=None, allow_none=True, validate=validate.Range(0.0, 0.5)
    )
    scaling = fields.String(
        load_default=None, allow_none=True, validate=validate.OneOf(["standard", "robust"])
    )
    embedding = fields.String(
        load_default=None, allow_none=True, validate=validate.OneOf(EMBEDDINGS)
    )
    embedding_frequencies = fields.Integer(
        load_default=_D.embedding_frequencies, validate=validate.Range(1, 256)
    )
    embedding_dim = fields.Integer(load_default=_D.embedding_dim, validate=validate.Range(1, 256))
    scale_layer = fields.Boolean(load_default=None, allow_none=True)
    ensemble_size = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(1, 64)
    )
    folds = IntegerOrAuto(
        0,
        20,
        load_default=None,
        allow_none=True,
        metadata={
            "description": "k-fold bagging of the tabular network: k members, each trained "
            "without one fold and validated on it (0 or 1: one validation split); 'auto': "
            "5 under 2,000 labelled rows, else 0; null: the recipe's",
            "oneOf": [
                {"type": "integer", "minimum": 0, "maximum": 20},
                {"type": "string", "enum": ["auto"]},
            ],
        },
    )
    temperature_scaling = fields.Boolean(load_default=None, allow_none=True)
    dropout_schedule = fields.String(
        load_default=None, allow_none=True, validate=validate.OneOf(DROPOUT_SCHEDULES)
    )
    best_epoch_metric = fields.String(
        load_default=None, allow_none=True, validate=validate.OneOf(BEST_EPOCH_METRICS)
    )
    seed = fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(0, 2**31 - 1),
        metadata={"description": "Random seed; null: one is drawn and stored with the job"},
    )


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
        values=fields.String(validate=validate.OneOf(["numeric", "categorical", "boolean"])),
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
