"""Job schemas: hyperparameters and submission in; job, metrics out."""

from marshmallow import ValidationError, fields, pre_load, validate

from service.api.common import MODEL_NAME, BaseSchema, PageArgsSchema
from service.db.models import JOB_STATUSES
from service.ml.device import DEVICES, GPU_BATCH_SIZE, PRECISIONS
from service.ml.network import ACTIVATIONS
from service.ml.training import LR_SCHEDULERS, OPTIMIZERS, TrainingConfig

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


class HyperparametersSchema(BaseSchema):
    """Every knob of the network and its training, each with a default."""

    hidden_layers = fields.List(
        fields.Integer(validate=validate.Range(1, 8192)),
        load_default=list(_D.hidden_layers),
        validate=validate.Length(max=16),
        metadata={"description": "Width of each hidden layer, input side first"},
    )
    activation = fields.String(
        load_default=_D.activation, validate=validate.OneOf(list(ACTIVATIONS))
    )
    dropout = fields.Float(
        load_default=_D.dropout, validate=validate.Range(0.0, 1.0, max_inclusive=False)
    )
    batch_norm = fields.Boolean(
        load_default=_D.batch_norm,
        metadata={"description": "Batch normalisation after each hidden Linear layer"},
    )
    optimizer = fields.String(load_default=_D.optimizer, validate=validate.OneOf(OPTIMIZERS))
    learning_rate = fields.Float(
        load_default=_D.learning_rate, validate=validate.Range(0.0, 10.0, min_inclusive=False)
    )
    momentum = fields.Float(load_default=_D.momentum, validate=validate.Range(0.0, 1.0))
    weight_decay = fields.Float(load_default=_D.weight_decay, validate=validate.Range(0.0, 1.0))
    batch_size = fields.Integer(
        load_default=_D.batch_size,
        validate=validate.Range(1, 65536),
        metadata={
            "description": f"Rows per step; default {_D.batch_size}, {GPU_BATCH_SIZE} for a GPU job"
        },
    )
    # The upper bound is TRAINSERVE_MAX_EPOCHS, checked at submit time.
    epochs = fields.Integer(load_default=_D.epochs, validate=validate.Range(min=1))
    validation_fraction = fields.Float(
        load_default=_D.validation_fraction, validate=validate.Range(0.05, 0.5)
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
        load_default=_D.lr_scheduler, validate=validate.OneOf(LR_SCHEDULERS)
    )
    lr_step_size = fields.Integer(load_default=_D.lr_step_size, validate=validate.Range(1, 10_000))
    lr_gamma = fields.Float(
        load_default=_D.lr_gamma, validate=validate.Range(0.0, 1.0, min_inclusive=False)
    )
    seed = fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(0, 2**31 - 1),
        metadata={"description": "Random seed; null: one is drawn and stored with the job"},
    )
    device = fields.String(
        load_default=_D.device,
        validate=validate.OneOf(DEVICES),
        metadata={
            "description": "cpu, or gpu: trained by a GPU worker (its own queue, "
            "training-gpu); the model serves on any API process all the same"
        },
    )
    precision = fields.String(
        load_default=_D.precision,
        validate=validate.OneOf(PRECISIONS),
        metadata={
            "description": "fp32, or bf16: forward passes in bfloat16 autocast (weights "
            "stay float32); pays on GPUs"
        },
    )

    @pre_load
    def _gpu_batch_size(self, data, **_kwargs):
        # A GPU job that does not choose its batch gets a larger one (bench/gpu.py).
        if isinstance(data, dict) and data.get("device") == "gpu" and "batch_size" not in data:
            data = {**data, "batch_size": GPU_BATCH_SIZE}
        return data


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
