"""The one table of hyperparameters: name, kind, default, bounds or choices, and help.

Everything else is generated from :data:`HYPERPARAMETERS`:

- :data:`TrainingConfig`, the frozen dataclass the ML core takes;
- the ``hyperparameters`` schema of ``POST /v1/jobs`` and of sweeps
  (``service.api.jobs.schemas``), and so the OpenAPI document and the dashboard's form;
- the flags of ``trainserve train`` (``trainserve_client.commands``; the client package
  ships this file as ``trainserve_client/hyperparameters.py``, a link to it).

Adding a knob is one new :class:`Hyperparameter` row here (then use it in the ML core
and name it in the docs); ``tests/test_hyperparameters.py`` checks that all of the
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


_SAME = object()


@dataclass(frozen=True)
class Hyperparameter:
    """One knob.

    ``minimum``/``maximum`` bound the value (each item's, for ``INT_LIST``), inclusive
    unless ``exclusive_minimum``/``exclusive_maximum``; ``nullable`` lets ``null`` mean
    "off"; ``config_default`` is what a ``TrainingConfig`` built in code takes when it
    differs from the API's ``default`` (``seed``: the API draws one at submit).
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
        }[self.kind]
        return base | None if self.nullable else base

    def initial(self) -> Any:
        """The config's default value."""
        return self.default if self.config_default is _SAME else self.config_default


HYPERPARAMETERS: tuple[Hyperparameter, ...] = (
    Hyperparameter(
        "hidden_layers", Kind.INT_LIST, (64, 64),
        "Width of each hidden layer, input side first",
        minimum=1, maximum=8192, max_items=16,
    ),
    Hyperparameter(
        "activation", Kind.CHOICE, "relu", "Activation after each hidden layer",
        choices=("relu", "tanh", "sigmoid", "gelu", "leaky_relu"),
    ),
    Hyperparameter(
        "dropout", Kind.FLOAT, 0.0, "Share of hidden outputs zeroed while training",
        minimum=0.0, maximum=1.0, exclusive_maximum=True,
    ),
    Hyperparameter(
        "batch_norm", Kind.BOOL, False, "Batch normalisation after each hidden Linear layer"
    ),
    Hyperparameter(
        "optimizer", Kind.CHOICE, "adam", "The optimiser", choices=("adam", "adamw", "sgd")
    ),
    Hyperparameter(
        "learning_rate", Kind.FLOAT, 1e-3, "Optimiser step size",
        minimum=0.0, maximum=10.0, exclusive_minimum=True,
    ),
    Hyperparameter(
        "momentum", Kind.FLOAT, 0.9, "Momentum of sgd", minimum=0.0, maximum=1.0
    ),
    Hyperparameter(
        "weight_decay", Kind.FLOAT, 0.0, "L2 penalty on the weights", minimum=0.0, maximum=1.0
    ),
    Hyperparameter(
        "batch_size", Kind.INT, 32, "Rows per optimiser step", minimum=1, maximum=65536
    ),
    # Measured (bench/accuracy.py): up to 100 epochs, stopping 10 epochs after the best
    # validation loss and keeping that epoch's weights. The upper bound is the server's
    # TRAINSERVE_MAX_EPOCHS, checked at submit.
    Hyperparameter(
        "epochs", Kind.INT, 100,
        "At most this many passes over the training rows (the server's "
        "TRAINSERVE_MAX_EPOCHS caps it)",
        minimum=1,
    ),
    Hyperparameter(
        "validation_fraction", Kind.FLOAT, 0.2,
        "Share of the rows held out for validation (a stratified split)",
        minimum=0.05, maximum=0.5,
    ),
    Hyperparameter(
        "early_stopping_patience", Kind.INT, 10,
        "Stop after this many epochs without a better validation loss "
        "and keep the best epoch's weights; null: off",
        minimum=0, maximum=10_000, nullable=True,
    ),
    Hyperparameter(
        "min_delta", Kind.FLOAT, 0.0,
        "Smallest fall of the validation loss that counts as better",
        minimum=0.0, maximum=1e6,
    ),
    Hyperparameter(
        "lr_scheduler", Kind.CHOICE, "none", "How the learning rate changes while training",
        choices=("none", "step", "cosine", "reduce_on_plateau", "one_cycle"),
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


@classmethod
def _from_json(cls, data: dict):
    """Inverse of ``to_json``; a knob missing from ``data`` (stored before it existed)
    takes its default."""
    values = dict(data)
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
        },
    )


#: A job's hyperparameters after validation: a frozen dataclass with one field per row,
#: each defaulting to the row's default; the ML core takes it (``Trainer``).
TrainingConfig = _config_class()
