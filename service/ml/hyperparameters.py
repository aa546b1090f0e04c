"""The one table of hyperparameters: name, kind, default, bounds or choices, and help.

Everything else is generated from :data:`HYPERPARAMETERS`:

- :data:`TrainingConfig`, the frozen dataclass the ML core takes;
- the ``hyperparameters`` schema of ``POST /v1/jobs`` and of sweeps
  (``service.api.jobs.schemas``), and so the OpenAPI document and the dashboard's form;
- the flags of ``trainserve train`` (``trainserve_client.commands``; the client package
  ships this file as ``trainserve_client/hyperparameters.py``, a link to it).

A row marked ``recipe`` defaults to ``null``, meaning "the recipe's value": the ``recipe``
row picks a set of such values (:data:`RECIPES`), and a config fills them in
when it is made, so its fields are always concrete. A config stored before the recipes
existed (no ``recipe`` key) is the ``plain`` recipe it was trained with.

Adding a knob is one new :class:`Hyperparameter` row here (then use it in the ML core
and name it in the docs); ``tests/ml/test_hyperparameters.py`` checks that all of the
above agree with the table. This module imports nothing but the standard library, so
the client and the ML core can both read it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """What values a hyperparameter takes (each generator knows every kind)."""

    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    CHOICE = "choice"  # one of ``choices`` (text)
    INT_LIST = "int_list"  # a list of integers, each within the bounds; a tuple in the config
    CLASS_WEIGHT = "class_weight"  # "balanced" or {class label as text: weight in (0, 1e6]}
    INT_OR_AUTO = "int_or_auto"  # an integer within the bounds, or "auto"


#: Recipes: named sets of values for the knobs marked ``recipe``. ``tabular`` is the
#: default, chosen by measurement on the accuracy suite (``bench/accuracy.py``,
#: ``bench/README.md``); ``plain`` is the recipe of every model trained before it (a
#: small MLP, Adam, batch 32, early stopping), for raw speed.
RECIPES: dict[str, dict[str, Any]] = {
    "plain": {
        "network": "mlp",
        "hidden_layers": (64, 64),
        "activation": "relu",
        "dropout": 0.0,
        "learning_rate": 1e-3,
        "batch_size": 32,
        "epochs": 100,
        "early_stopping": True,
        "lr_scheduler": "none",
        "adam_beta2": 0.999,
        "label_smoothing": 0.0,
        "scaling": "standard",
        "squash": "clip",
        "embedding": "none",
        "scale_layer": False,
        "ensemble_size": 1,
        "folds": 0,
        "temperature_scaling": False,
        "dropout_schedule": "constant",
        "best_epoch_metric": "loss",
    },
    "tabular": {
        "network": "tabular",
        "hidden_layers": (256, 256, 256),
        "activation": "selu",
        "dropout": 0.15,
        "learning_rate": 0.04,
        "batch_size": "auto",
        "epochs": 64,
        "early_stopping": False,
        "lr_scheduler": "coslog4",
        "adam_beta2": 0.95,
        "label_smoothing": 0.1,
        "scaling": "quantile",
        "squash": "asinh",
        "embedding": "periodic",
        "scale_layer": True,
        "ensemble_size": 1,
        "folds": "auto",
        "temperature_scaling": True,
        "dropout_schedule": "flat_cosine",
        "best_epoch_metric": "accuracy",
    },
}


#: ``folds: "auto"`` (the tabular recipe's): k-fold bagging by the number of labelled
#: rows, as (fewer rows than, k) in order; one validation split (0) from the last bound
#: on. A small table's one validation split is a few dozen rows, too few to pick the
#: best epoch and the temperature, and on tables of a few thousand rows one network is
#: still a noisy draw (hpc's accuracy moved by 4 points between variants that should not
#: matter). Averaging 4 out-of-fold members closed hpc's gap to LightGBM (83.47 % against
#: 78.95 % for one network and 82.64 % for 3 members); under 2,000 rows 3 members
#: already meet the suite's targets, and a fourth there (where the plain recipe stops
#: after a few epochs) would take the defaults past the training-time budget, 10x the
#: plain recipe on the suite; above 5,000 rows one split holds enough rows
#: (bench/README.md).
AUTO_FOLDS_BY_ROWS: tuple[tuple[int, int], ...] = ((2000, 3), (5000, 4))


def resolve_folds(folds: int | str, n_rows: int) -> int:
    """Bagging folds of a job: ``folds``, or for ``"auto"`` the k of
    :data:`AUTO_FOLDS_BY_ROWS` for ``n_rows`` labelled rows (0, one validation split,
    above its last bound)."""
    if folds == "auto":
        return next((k for below, k in AUTO_FOLDS_BY_ROWS if n_rows < below), 0)
    return int(folds)


_SAME = object()


@dataclass(frozen=True)
class Hyperparameter:
    """One knob.

    ``minimum``/``maximum`` bound the value (each item's, for ``INT_LIST``), inclusive
    unless ``exclusive_minimum``/``exclusive_maximum``; ``nullable`` lets ``null`` mean
    "off"; ``recipe`` makes the default ``null``, "the recipe's value";
    ``config_default`` is what a ``TrainingConfig`` built in code takes when it differs
    from the API's ``default`` (``seed``: the API draws one at submit).
    """

    name: str
    kind: Kind
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False
    max_items: int | None = None
    config_default: Any = _SAME
    recipe: bool = False

    @property
    def flag(self) -> str:
        """The command-line flag: ``learning_rate`` → ``--learning-rate``."""
        return "--" + self.name.replace("_", "-")

    @property
    def python_type(self) -> Any:
        """The annotation of the config's field."""
        base = {
            Kind.INT: int,
            Kind.FLOAT: float,
            Kind.BOOL: bool,
            Kind.CHOICE: str,
            Kind.INT_LIST: tuple[int, ...],
            Kind.CLASS_WEIGHT: str | dict,
            Kind.INT_OR_AUTO: int | str,
        }[self.kind]
        return base | None if self.nullable or self.recipe else base

    def initial(self) -> Any:
        """The config's default value."""
        return self.default if self.config_default is _SAME else self.config_default


def _recipe_knob(name: str, kind: Kind, help: str, **bounds: Any) -> Hyperparameter:
    """A knob whose default is ``null``, "the recipe's value" (:data:`RECIPES`)."""
    return Hyperparameter(name, kind, None, help + "; null: the recipe's", recipe=True, **bounds)


HYPERPARAMETERS: tuple[Hyperparameter, ...] = (
    Hyperparameter(
        "recipe", Kind.CHOICE, "tabular",
        "Defaults of the knobs whose null means the recipe's: tabular (embeddings, NT "
        "layers, label smoothing, best epoch, calibrated; chosen on bench/accuracy.py) or "
        "plain (a small MLP with early stopping: about 10x faster, as before)",
        choices=tuple(RECIPES), config_default="plain",
    ),
    _recipe_knob(
        "network", Kind.CHOICE,
        "mlp (plain layers) or tabular (embeddings, NT layers, ensemble members)",
        choices=("mlp", "tabular"),
    ),
    _recipe_knob(
        "hidden_layers", Kind.INT_LIST,
        "Width of each hidden layer, input side first",
        minimum=1, maximum=8192, max_items=16,
    ),
    _recipe_knob(
        "activation", Kind.CHOICE, "Activation after each hidden layer",
        choices=("relu", "tanh", "sigmoid", "gelu", "leaky_relu", "selu", "silu"),
    ),
    _recipe_knob(
        "dropout", Kind.FLOAT,
        "Share of hidden outputs zeroed while training (see dropout_schedule)",
        minimum=0.0, maximum=1.0, exclusive_maximum=True,
    ),
    Hyperparameter(
        "batch_norm", Kind.BOOL, False, "Batch normalisation after each hidden Linear layer"
    ),
    Hyperparameter(
        "optimizer", Kind.CHOICE, "adam", "The optimiser", choices=("adam", "adamw", "sgd")
    ),
    _recipe_knob(
        "learning_rate", Kind.FLOAT,
        "Optimiser step size (the tabular network's weights are N(0, 1) scaled by "
        "1/sqrt(fan-in), so its rates are larger)",
        minimum=0.0, maximum=10.0, exclusive_minimum=True,
    ),
    Hyperparameter(
        "momentum", Kind.FLOAT, 0.9, "Momentum of sgd", minimum=0.0, maximum=1.0
    ),
    Hyperparameter(
        "weight_decay", Kind.FLOAT, 0.0, "L2 penalty on the weights", minimum=0.0, maximum=1.0
    ),
    _recipe_knob(
        "batch_size", Kind.INT_OR_AUTO,
        "Rows per optimiser step, or auto: 256, fewer on small tables so that an epoch "
        "takes at least 8 steps",
        minimum=1, maximum=65536,
    ),
    # Measured (bench/accuracy.py): up to 100 epochs, stopping 10 epochs after the best
    # validation loss and keeping that epoch's weights. The upper bound is the server's
    # TRAINSERVE_MAX_EPOCHS, checked at submit.
    _recipe_knob(
        "epochs", Kind.INT,
        "At most this many passes over the training rows (the server's "
        "TRAINSERVE_MAX_EPOCHS caps it)",
        minimum=1,
    ),
    Hyperparameter(
        "validation_fraction", Kind.FLOAT, 0.2,
        "Share of the rows held out for validation (a stratified split)",
        minimum=0.05, maximum=0.5,
    ),
    _recipe_knob(
        "early_stopping", Kind.BOOL,
        "Stop when the validation loss stopped improving (early_stopping_patience)",
    ),
    Hyperparameter(
        "early_stopping_patience", Kind.INT, 10,
        "Stop after this many epochs without a better validation loss "
        "and keep the best epoch's weights; null: off",
        minimum=0, maximum=10_000, nullable=True,
    ),
    Hyperparameter(
        "min_delta", Kind.FLOAT, 0.0, "Smallest fall of the validation loss that counts as better",
        minimum=0.0, maximum=1e6,
    ),
    _recipe_knob(
        "lr_scheduler", Kind.CHOICE,
        "How the learning rate changes while training; coslog4: four cosine cycles in "
        "log time, flat_cosine: constant, then a cosine to 0 over the second half (both "
        "per step)",
        choices=(
            "none", "step", "cosine", "reduce_on_plateau", "one_cycle", "coslog4",
            "flat_cosine",
        ),
    ),
    Hyperparameter(
        "lr_step_size", Kind.INT, 10,
        "Epochs between steps of the step scheduler; the plateau scheduler waits "
        "a fifth of it (at least 1 epoch)",
        minimum=1, maximum=10_000,
    ),
    Hyperparameter(
        "lr_gamma", Kind.FLOAT, 0.1, "Factor of the step and plateau schedulers",
        minimum=0.0, maximum=1.0, exclusive_minimum=True,
    ),
    Hyperparameter(
        "gradient_clip", Kind.FLOAT, None,
        "Clip the gradients' global norm to this; null: off",
        minimum=0.0, maximum=1e6, exclusive_minimum=True, nullable=True,
    ),
    Hyperparameter(
        "class_weight", Kind.CLASS_WEIGHT, None,
        "null, 'balanced' (inverse class frequency), or {class: weight}",
        nullable=True,
    ),
    _recipe_knob(
        "adam_beta2", Kind.FLOAT,
        "Adam's second-moment decay (0.95 reacts faster than 0.999)",
        minimum=0.0, maximum=1.0, exclusive_maximum=True,
    ),
    _recipe_knob(
        "label_smoothing", Kind.FLOAT,
        "Share of each training label spread over all classes",
        minimum=0.0, maximum=0.5,
    ),
    _recipe_knob(
        "scaling", Kind.CHOICE,
        "Numeric inputs: standard (mean, standard deviation), robust (median, "
        "interquartile range; the tabular network then squashes them, see squash) or "
        "quantile (rank-Gauss: each value's share of the training values below it, as "
        "a standard normal score; squashed like robust)",
        choices=("standard", "robust", "quantile"),
    ),
    _recipe_knob(
        "squash", Kind.CHOICE,
        "How the tabular network bounds quantile- or robust-scaled numeric inputs: clip "
        "(x / sqrt(1 + (x/3)^2), smoothly to ±3) or asinh (like log(2x) for large x, so "
        "heavy-tailed counts keep their large values apart)",
        choices=("clip", "asinh"),
    ),
    _recipe_knob(
        "embedding", Kind.CHOICE, "Numeric features in the tabular network: none, or periodic "
        "(cos of learned frequencies, then a per-feature linear map)",
        choices=("none", "periodic"),
    ),
    Hyperparameter(
        "embedding_frequencies", Kind.INT, 16,
        "Frequencies per numeric feature of the periodic embedding",
        minimum=1, maximum=256,
    ),
    Hyperparameter(
        "embedding_dim", Kind.INT, 3,
        "Outputs per numeric feature of the periodic embedding (the value itself is kept "
        "beside them)",
        minimum=1, maximum=256,
    ),
    _recipe_knob(
        "scale_layer", Kind.BOOL,
        "A learned scale per input of the tabular network's first layer",
    ),
    _recipe_knob(
        "ensemble_size", Kind.INT,
        "Members of the tabular network trained side by side (their probabilities are "
        "averaged); folds overrides it",
        minimum=1, maximum=64,
    ),
    _recipe_knob(
        "folds", Kind.INT_OR_AUTO,
        "k-fold bagging of the tabular network: k members, each trained without one fold "
        "and validated on it, so every row is used (0 or 1: one validation split); auto: "
        "3 under 2,000 labelled rows, 4 under 5,000, else 0",
        minimum=0, maximum=20,
    ),
    _recipe_knob(
        "temperature_scaling", Kind.BOOL,
        "Fit a temperature to the validation rows after training (tabular network), so "
        "the probabilities are calibrated",
    ),
    _recipe_knob(
        "dropout_schedule", Kind.CHOICE,
        "constant, or flat_cosine: full dropout for the first half, then down to 0",
        choices=("constant", "flat_cosine"),
    ),
    _recipe_knob(
        "best_epoch_metric", Kind.CHOICE,
        "The validation metric that picks the epoch kept (and early stopping watches): "
        "loss, or accuracy (ties to the lower loss)",
        choices=("loss", "accuracy"),
    ),
    Hyperparameter(
        "seed", Kind.INT, None, "Random seed; null: one is drawn and stored with the job",
        minimum=0, maximum=2**31 - 1, nullable=True, config_default=0,
    ),
    # A job stored before these rows existed trained on the CPU in float32: the defaults.
    Hyperparameter(
        "device", Kind.CHOICE, "cpu",
        "cpu, or gpu: trained by a GPU worker (the training-gpu queue; batch_size then "
        "defaults to 512); the model serves on any API process all the same",
        choices=("cpu", "gpu"),
    ),
    Hyperparameter(
        "precision", Kind.CHOICE, "fp32",
        "fp32, or bf16: forward passes under bfloat16 autocast (weights and the stored "
        "model stay float32); pays on GPUs",
        choices=("fp32", "bf16"),
    ),
)  # fmt: skip

BY_NAME: dict[str, Hyperparameter] = {h.name: h for h in HYPERPARAMETERS}


def _to_json(self) -> dict:
    """JSON-safe form (lists, not tuples)."""
    data = dataclasses.asdict(self)
    for h in HYPERPARAMETERS:
        if h.kind is Kind.INT_LIST and data[h.name] is not None:
            data[h.name] = list(data[h.name])
    return data


def _post_init(self) -> None:
    """Fill every recipe knob left ``None`` with the recipe's value."""
    for name, value in RECIPES[self.recipe].items():
        if getattr(self, name) is None:
            object.__setattr__(self, name, value)
    if not isinstance(self.hidden_layers, tuple):
        object.__setattr__(self, "hidden_layers", tuple(self.hidden_layers))


@classmethod
def _from_json(cls, data: dict):
    """Inverse of ``to_json``; a knob missing from ``data`` (stored before it existed)
    takes its default, and a config stored before the recipes is the plain recipe."""
    values = {"recipe": "plain", **data}
    for h in HYPERPARAMETERS:
        if h.kind is Kind.INT_LIST and values.get(h.name) is not None:
            values[h.name] = tuple(values[h.name])
    return cls(**values)


def _config_class() -> type:
    return dataclasses.make_dataclass(
        "TrainingConfig",
        [(h.name, h.python_type, dataclasses.field(default=h.initial())) for h in HYPERPARAMETERS],
        frozen=True,
        namespace={
            "__doc__": "A job's hyperparameters after validation, with every default "
            "filled in; its fields are the rows of service.ml.hyperparameters.",
            "__module__": __name__,
            "to_json": _to_json,
            "from_json": _from_json,
            "__post_init__": _post_init,
        },
    )


#: A job's hyperparameters after validation: a frozen dataclass with one field per row,
#: each defaulting to the row's default; the ML core takes it (``Trainer``).
TrainingConfig = _config_class()
