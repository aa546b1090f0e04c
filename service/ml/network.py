"""The multilayer perceptron built from hyperparameters.

Each hidden layer is ``Linear`` (a weighted sum plus bias per neuron), then batch
normalisation when asked for, then the activation, then dropout when asked for. The
last layer has one output (logit)
per class; softmax of the logits gives the class probabilities.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}


@dataclass(frozen=True)
class Architecture:
    """Everything needed to rebuild the network's shape; stored as JSON with the weights."""

    n_inputs: int
    n_classes: int
    hidden_layers: tuple[int, ...]
    activation: str
    dropout: float
    batch_norm: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {**asdict(self), "hidden_layers": list(self.hidden_layers)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Architecture:
        """Inverse of :meth:`to_json`."""
        return cls(**{**data, "hidden_layers": tuple(data["hidden_layers"])})


def build_mlp(arch: Architecture) -> nn.Sequential:
    """Build the network; parameters initialised from torch's current RNG state.

    Parameters
    ----------
    arch:
        Input width, class count, hidden widths, activation name and dropout.

    Returns
    -------
    ``nn.Sequential`` mapping ``(batch, n_inputs)`` float32 to ``(batch, n_classes)`` logits.
    """
    layers: list[nn.Module] = []
    width = arch.n_inputs
    for hidden in arch.hidden_layers:
        layers.append(nn.Linear(width, hidden))
        if arch.batch_norm:
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(ACTIVATIONS[arch.activation]())
        if arch.dropout > 0:
            layers.append(nn.Dropout(arch.dropout))
        width = hidden
    layers.append(nn.Linear(width, arch.n_classes))
    return nn.Sequential(*layers)


def count_parameters(arch: Architecture) -> int:
    """Number of weights and biases, computed without building the network."""
    widths = [arch.n_inputs, *arch.hidden_layers, arch.n_classes]
    linear = sum((a + 1) * b for a, b in zip(widths, widths[1:], strict=False))
    return linear + (2 * sum(arch.hidden_layers) if arch.batch_norm else 0)
