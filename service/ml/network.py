"""The networks built from hyperparameters: the plain MLP and the tabular ensemble.

``kind="mlp"`` (the plain recipe, and every model stored before issue 13) is the
textbook network: each hidden layer is ``Linear`` (a weighted sum plus bias per neuron),
then batch normalisation when asked for, then the activation, then dropout when asked
for; the last layer has one output (logit) per class; softmax of the logits gives the
class probabilities.

``kind="tabular"`` (the default recipe) keeps that core and adds what the tabular
deep-learning literature measured to pay (RealMLP, Holzmüller et al. 2024; TabM,
Gorishniy et al. 2025; numerical embeddings, Gorishniy et al. 2022):

- smooth clipping of the robust-scaled numeric inputs, ``x / sqrt(1 + (x / 3)²)``, or
  ``asinh(x)``, which grows like ``log(2x)``: heavy-tailed counts keep their large values
  apart instead of all meeting at 3;
- periodic embeddings of each numeric input: ``cos(2π (w·x + b))`` with ``m`` frequencies
  per feature, a per-feature linear map to ``d`` outputs, and the value itself beside
  them (so each numeric feature becomes ``d + 1`` inputs);
- a learnable diagonal scaling of the first layer's inputs;
- the hidden layers in NT parametrization (weights drawn from N(0, 1), scaled by
  ``1/sqrt(fan_in)`` in the forward pass), so Adam's step is the same for every width;
- ``k`` independent members computed side by side as one module (batched matrix
  products). The network returns ``log(mean_k softmax(logits_k / T))``: softmax of its
  output is the members' mean probability, tempered by ``T`` (fitted on the validation
  split after training, stored as a buffer), so predict and every export take softmax
  of the output as before.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "selu": nn.SELU,
    "silu": nn.SiLU,
}
KINDS = ("mlp", "tabular")
EMBEDDINGS = ("none", "periodic")


@dataclass(frozen=True)
class Architecture:
    """Everything needed to rebuild the network's shape; stored as JSON with the weights.

    The fields after ``batch_norm`` came with the tabular network; a description stored
    before them lacks them and rebuilds the plain MLP it was.
    """

    n_inputs: int
    n_classes: int
    hidden_layers: tuple[int, ...]
    activation: str
    dropout: float
    batch_norm: bool = False
    kind: str = "mlp"
    # Inputs that carry a numeric value (robust-scaled): clipped and embedded.
    numeric_inputs: tuple[int, ...] = ()
    smooth_clip: bool = False  # squash the numeric inputs (robust scaling), see ``squash``
    embedding: str = "none"
    embedding_frequencies: int = 16
    embedding_dim: int = 4
    scale_layer: bool = False
    ensemble_size: int = 1
    # How ``smooth_clip`` squashes: "clip" (to ±3) or "asinh"; older descriptions: clip.
    squash: str = "clip"

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form."""
        data = asdict(self)
        return {
            **data,
            "hidden_layers": list(self.hidden_layers),
            "numeric_inputs": list(self.numeric_inputs),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Architecture:
        """Inverse of :meth:`to_json`; fields absent from older descriptions take defaults."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["hidden_layers"] = tuple(values["hidden_layers"])
        values["numeric_inputs"] = tuple(values.get("numeric_inputs", ()))
        return cls(**values)

    @property
    def first_width(self) -> int:
        """Width of the first layer's input, after the numeric embeddings."""
        if self.kind != "tabular" or self.embedding == "none":
            return self.n_inputs
        return self.n_inputs + len(self.numeric_inputs) * self.embedding_dim


def build_network(arch: Architecture) -> nn.Module:
    """Build the network of ``arch``; parameters initialised from torch's current RNG.

    Returns
    -------
    A module mapping ``(batch, n_inputs)`` float32 to ``(batch, n_classes)`` logits (for
    the tabular kind: log-probabilities of the ensemble, which softmax leaves unchanged).
    """
    if arch.kind == "tabular":
        return TabularNet(arch)
    return build_mlp(arch)


def build_mlp(arch: Architecture) -> nn.Sequential:
    """The plain MLP: ``nn.Sequential`` of ``Linear`` [``BatchNorm1d``] activation
    [``Dropout``] per hidden layer, then a ``Linear`` to one logit per class."""
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


class SmoothClip(nn.Module):
    """``x / sqrt(1 + (x / bound)²)``: the identity near 0, tends to ±bound."""

    def __init__(self, bound: float = 3.0):
        super().__init__()
        self.bound = bound

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(1 + (x / self.bound) ** 2)


class Asinh(nn.Module):
    """``asinh(x)``: the identity near 0, ``sign(x) log(2|x|)`` far from it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.asinh(x)


SQUASHES: dict[str, type[nn.Module]] = {"clip": SmoothClip, "asinh": Asinh}


class PeriodicEmbedding(nn.Module):
    """Each of ``n`` features → ``[x, linear(cos(2π (w x + b)))]``, for ``k`` members.

    Input ``(k, batch, n)``; output ``(k, batch, n * (dim + 1))``.
    """

    def __init__(self, k: int, n: int, frequencies: int, dim: int, scale: float = 0.1):
        super().__init__()
        self.frequency = nn.Parameter(torch.randn(k, 1, n, frequencies) * scale)
        self.phase = nn.Parameter(torch.rand(k, 1, n, frequencies) * 2 - 1)
        bound = 1 / math.sqrt(frequencies)
        self.weight = nn.Parameter((torch.rand(k, n, frequencies, dim) * 2 - 1) * bound)
        self.bias = nn.Parameter((torch.rand(k, 1, n, dim) * 2 - 1) * bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, batch, n = x.shape
        features = torch.cos(2 * math.pi * (x.unsqueeze(-1) * self.frequency + self.phase))
        # (k, batch, n, m) x (k, n, m, d) -> (k, batch, n, d), one small matmul per feature
        embedded = torch.einsum("kbnm,knmd->kbnd", features, self.weight) + self.bias
        return torch.cat([x.unsqueeze(-1), embedded], dim=-1).reshape(k, batch, -1)


class EnsembleLinear(nn.Module):
    """``k`` independent linear layers applied side by side: ``(k, b, i) -> (k, b, o)``.

    NT parametrization: weights from N(0, 1), multiplied by ``1/sqrt(i)`` in the forward.
    """

    def __init__(self, k: int, n_in: int, n_out: int, bias_init: str = "uniform"):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(k, n_in, n_out))
        if bias_init == "zero":
            self.bias = nn.Parameter(torch.zeros(k, 1, n_out))
        else:
            self.bias = nn.Parameter((torch.rand(k, 1, n_out) * 2 - 1) / math.sqrt(n_in))
        self.factor = 1 / math.sqrt(n_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight * self.factor)


class TabularNet(nn.Module):
    """The tabular network: see the module docstring."""

    def __init__(self, arch: Architecture):
        super().__init__()
        k = arch.ensemble_size
        self.k = k
        numeric = list(arch.numeric_inputs)
        others = [i for i in range(arch.n_inputs) if i not in set(numeric)]
        self.register_buffer("numeric_index", torch.tensor(numeric, dtype=torch.long))
        self.register_buffer("other_index", torch.tensor(others, dtype=torch.long))
        self.clip = SQUASHES[arch.squash]() if arch.smooth_clip else None
        self.embedding = (
            PeriodicEmbedding(k, len(numeric), arch.embedding_frequencies, arch.embedding_dim)
            if arch.embedding == "periodic" and numeric
            else None
        )
        width = arch.first_width
        self.scale = nn.Parameter(torch.ones(k, 1, width)) if arch.scale_layer else None
        layers: list[nn.Module] = []
        for hidden in arch.hidden_layers:
            layers.append(EnsembleLinear(k, width, hidden))
            layers.append(ACTIVATIONS[arch.activation]())
            layers.append(nn.Dropout(arch.dropout))
            width = hidden
        self.hidden = nn.Sequential(*layers)
        self.head = EnsembleLinear(k, width, arch.n_classes, bias_init="zero")
        self.register_buffer("temperature", torch.ones(()))

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's logits, ``(k, batch, n_classes)``, before the temperature.

        ``x`` is ``(batch, n_inputs)``, the same rows for every member, or (bagging's
        training) ``(k, batch, n_inputs)``, each member's own rows.
        """
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.k, -1, -1)
        numeric = x.index_select(2, self.numeric_index)
        if self.clip is not None:
            numeric = self.clip(numeric)
        if self.embedding is not None:
            numeric = self.embedding(numeric)
        rest = x.index_select(2, self.other_index)
        h = torch.cat([numeric, rest], dim=-1)
        if self.scale is not None:
            h = h * self.scale
        return self.head(self.hidden(h))

    def combine(self, member_logits: torch.Tensor) -> torch.Tensor:
        """log of the members' mean probability, each tempered by the fitted temperature."""
        log_p = torch.log_softmax(member_logits / self.temperature, dim=-1)
        if self.k == 1:
            return log_p[0]
        return torch.logsumexp(log_p, dim=0) - math.log(self.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(self.member_logits(x))


def count_parameters(arch: Architecture) -> int:
    """Number of trainable weights, computed without building the network."""
    if arch.kind != "tabular":
        widths = [arch.n_inputs, *arch.hidden_layers, arch.n_classes]
        linear = sum((a + 1) * b for a, b in zip(widths, widths[1:], strict=False))
        return linear + (2 * sum(arch.hidden_layers) if arch.batch_norm else 0)
    n, m, d = len(arch.numeric_inputs), arch.embedding_frequencies, arch.embedding_dim
    embedding = n * (2 * m + m * d + d) if arch.embedding == "periodic" and n else 0
    scale = arch.first_width if arch.scale_layer else 0
    widths = [arch.first_width, *arch.hidden_layers, arch.n_classes]
    linear = sum((a + 1) * b for a, b in zip(widths, widths[1:], strict=False))
    return arch.ensemble_size * (embedding + scale + linear)
