"""The tabular network folded for small predict requests: the same probabilities in a
few large operations.

:class:`~service.ml.network.TabularNet` is written for training: modules, learnable
parts kept apart (embedding maps, the scale layer, NT factors, the temperature) and the
members' log-probabilities combined so that every export returns logits-like output.
For a request of a few rows its cost is the number of torch calls (about 50, each a few
µs of dispatch, several with a Python scalar, plus a copy of every weight matrix per call
for the NT factor), not the arithmetic. :class:`FoldedTabular` is built once from a
loaded network and computes the same probabilities with a dozen calls:

- the constant parts are folded into the first layer's weights (in float64, rounded to
  float32 once, at load): the diagonal scale layer, the NT factor ``1/sqrt(fan_in)``
  and the periodic embeddings' bias; for one network also the embeddings' per-feature
  linear map. The first layer then reads ``[x, squash(numeric x), cos features]`` (one
  network) or ``[x, squash(numeric x), embedded features]`` (several members) with one
  matrix product; when the numeric inputs enter squashed, ``x`` is only the other
  inputs (the numeric ones' raw rows would be zero);
- why several members keep the per-feature map apart: folded, it turns each numeric
  feature's ``dim`` rows of the first layer into ``frequencies`` rows (3 into 16 by
  default), so the default 4 members' weights grow from 2.5 to 3.6 MB, past this
  machine's 2 MB second-level cache. A one-row request is a matrix-vector product per
  layer, paced by reading the weights, not by arithmetic: with the map kept apart (one
  small NumPy product) 4 members' one-row forward took 0.32 against 0.37 ms, 3 members'
  0.26 against 0.31 (alternated in one process, medians). One network's folded weights
  (0.9 MB) stay in that cache, and there folding saves a call;
- with several members the first layer's inputs are one ``(k, rows, n)`` array that the
  squashed values and each member's map product are written into (no concatenation),
  the numeric inputs taken as a slice when they are all the inputs;
- every later layer's NT factor is folded into its weights, and ``1/T`` into the last;
- the members' mean probability is ``softmax`` then the mean over the members;
- the element-wise input work (squashing 20-odd values, their cos features) and the
  matrix products are NumPy's: on arrays this small a NumPy call costs a fraction of a
  torch call (one layer of 4 members, one row: 13 against 25 µs for ``torch.bmm``, both
  on one thread; ``trainserve api`` gives NumPy's BLAS one thread per process, as
  torch). The activations and the softmax stay torch's, on views of the same memory,
  so that each is the network's own function.

The element-wise steps are the network's own float32 operations in the same order;
NumPy's ``cos`` and the summation order of the matrix products differ from torch's in
the last bits, so the probabilities agree with the network's to
float32 rounding (tested to 1e-5 on extreme inputs too). The network itself is kept:
training, checkpoints, exports and large batches use it unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional

from service.ml.network import EnsembleLinear, SmoothClip, TabularNet

#: The activations of :data:`service.ml.network.ACTIVATIONS` as functions (the same
#: defaults: leaky_relu's slope 0.01, exact gelu).
FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": functional.gelu,
    "leaky_relu": functional.leaky_relu,
    "selu": torch.selu,
    "silu": functional.silu,
}
_ONE = np.float32(1)
_TWO_PI = np.float32(2 * math.pi)  # torch multiplies a float32 tensor by it in float32


class FoldedTabular:
    """Class probabilities of a :class:`TabularNet` in eval mode, with its constants folded.

    Parameters
    ----------
    network:
        The loaded network; read once (later changes to it are not seen).
    activation:
        The architecture's activation (a key of :data:`FUNCTIONS`).
    """

    def __init__(self, network: TabularNet, activation: str):
        self.k = network.k
        self.activation = FUNCTIONS[activation]
        self.numeric = network.numeric_index.numpy().copy()
        clip = network.clip
        self.bound = np.float32(clip.bound) if isinstance(clip, SmoothClip) else None
        self.asinh = network.clip is not None and self.bound is None
        self.squashed = network.clip is not None and len(self.numeric) > 0
        self.others = network.other_index.numpy().copy()
        embedding = network.embedding
        self.maps = None  # (k, n, m, d): the embeddings' per-feature maps, kept apart
        if embedding is not None:  # (k, 1, n, m), or (n, m) for one member
            frequency, phase = (p.detach().numpy() for p in (embedding.frequency, embedding.phase))
            self.frequency = (frequency[0, 0] if self.k == 1 else frequency).copy()
            self.phase = (phase[0, 0] if self.k == 1 else phase).copy()
            if self.k > 1:
                self.maps = embedding.weight.detach().numpy().copy()
        else:
            self.frequency = self.phase = None
        with torch.no_grad():
            weights = _folded_weights(network, fold_maps=self.maps is None)
        if self.k == 1:
            weights = [(w[0], b[0, 0]) for w, b in weights]
        self.layers = [(w.contiguous().numpy(), b.contiguous().numpy()) for w, b in weights]
        self.n_first = self.layers[0][0].shape[-2]  # the first layer's inputs
        # Where each part of the first layer's inputs goes (see _first_inputs); the
        # numeric inputs as a slice when they are all the inputs, in order (no copy).
        n_inputs = len(self.numeric) + len(self.others)
        self.numeric_at = self.numeric
        if np.array_equal(self.numeric, np.arange(n_inputs)):
            self.numeric_at = slice(None)
        self.x_width = len(self.others) if self.squashed else n_inputs
        self.squashed_width = len(self.numeric) if self.squashed else 0

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """float64 ``(rows, classes)`` probabilities of float32 ``(rows, n_inputs)`` rows."""
        # Overflow gives inf (then NaN) silently, as in torch: huge values squash to 0
        # where SmoothClip's square overflows, and unsquashed ones overflow the layers.
        with np.errstate(over="ignore", invalid="ignore"):
            return self._forward(self._first_inputs(np.ascontiguousarray(x, dtype=np.float32)))

    def _first_inputs(self, x: np.ndarray) -> np.ndarray:
        """The first layer's inputs: the other inputs (all of ``x`` when the numeric ones
        enter unsquashed), the squashed numeric ones, their embedding; with several
        members ``(k, rows, n)``, each member's embedding its own."""
        if not len(self.numeric):
            return x if self.k == 1 else np.broadcast_to(x, (self.k, *x.shape))
        numeric = self.squash(x[:, self.numeric_at])
        if self.k == 1:
            parts = [x[:, self.others] if self.squashed else x]
            if self.squashed:
                parts.append(numeric)
            if self.frequency is not None:
                parts.append(self.periodic(numeric))
            return np.concatenate(parts, axis=1) if len(parts) > 1 else x
        # Each part written in place: cheaper than broadcast_to + concatenate on a few rows.
        h = np.empty((self.k, len(x), self.n_first), dtype=np.float32)
        at = self.x_width
        if at:
            h[:, :, :at] = x[:, self.others] if self.squashed else x
        if self.squashed_width:
            h[:, :, at : at + self.squashed_width] = numeric
            at += self.squashed_width
        if self.frequency is not None:
            self.periodic(numeric, out=h[:, :, at:])
        return h

    def squash(self, numeric: np.ndarray) -> np.ndarray:
        """The network's squashing of the numeric inputs: ``SmoothClip``'s
        ``x * rsqrt(1 + (x / bound)²)`` step by step in float32, or torch's ``asinh``."""
        if self.bound is not None:
            scaled = numeric / self.bound
            return numeric * (_ONE / np.sqrt(_ONE + scaled * scaled))
        if self.asinh:  # torch's: NumPy's differs by an ulp, which the cos features amplify
            return torch.asinh(torch.from_numpy(numeric)).numpy()
        return numeric

    def periodic(self, numeric: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``cos(2π (w x + b))`` flattened per row: ``(rows, n * m)``; with several
        members each feature's map applied too (its bias is in the first layer's):
        ``(k, rows, n * d)``, written into ``out`` when given."""
        angle = numeric[..., None] * self.frequency + self.phase
        angle *= _TWO_PI
        np.cos(angle, out=angle)
        if self.maps is None:
            return angle.reshape(*angle.shape[:-2], -1)
        # (k, n, rows, m) @ (k, n, m, d) -> (k, n, rows, d), the axes of (k, rows, n, d)
        k, rows, n, _ = angle.shape
        if out is None:
            out = np.empty((k, rows, n * self.maps.shape[-1]), dtype=np.float32)
        embedded = out.reshape(k, rows, n, -1, copy=False).transpose(0, 2, 1, 3)
        np.matmul(angle.transpose(0, 2, 1, 3), self.maps, out=embedded)
        return out

    def _forward(self, h: np.ndarray) -> np.ndarray:
        # No inference_mode: no tensor here requires grad, so autograd records nothing,
        # and entering the mode costs more than it saves on a few calls.
        activation = self.activation
        *hidden, (last, last_bias) = self.layers
        for weight, bias in hidden:
            h = np.matmul(h, weight)
            h += bias
            h = activation(torch.from_numpy(h)).numpy()
        logits = np.matmul(h, last)
        logits += last_bias
        members = torch.softmax(torch.from_numpy(logits), dim=-1, dtype=torch.float64).numpy()
        if self.k == 1:
            return members
        return np.add.reduce(members, axis=0) / self.k  # the members' mean


def _folded_weights(
    network: TabularNet, *, fold_maps: bool = True
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's float32 ``(weight (k, in, out), bias (k, 1, out))`` with the NT
    factors, the scale layer, the embeddings' bias and the temperature folded in; the
    first layer's rows are ``[x, squashed numeric inputs (if squashed), cos features]``,
    or with ``fold_maps=False`` ``[..., embedded features]`` (the maps applied apart).

    ``weight * factor`` is the product the network takes in every forward, so the middle
    layers are its own weights bit for bit; the first layer is folded in float64."""
    layers = [m for m in network.hidden if isinstance(m, EnsembleLinear)] + [network.head]
    weights = [(m.weight.detach() * m.factor, m.bias.detach()) for m in layers]
    first, bias = (w.double() for w in weights[0])
    if network.scale is not None:
        first = first * network.scale.double().transpose(1, 2)
    k, _, out = first.shape
    numeric, others = network.numeric_index, network.other_index
    n, embedding = len(numeric), network.embedding
    # Where each numeric value and the other inputs sit in the network's first layer.
    step = embedding.weight.shape[-1] + 1 if embedding is not None else 1
    value_rows = torch.arange(n) * step
    x_rows = first.new_zeros((k, n + len(others), out))
    x_rows[:, others] = first[:, torch.arange(len(others)) + n * step]
    if network.clip is not None and n:  # x's rows of the numeric inputs would be zero
        blocks = [x_rows[:, others], first[:, value_rows]]
    else:
        x_rows[:, numeric] = first[:, value_rows]
        blocks = [x_rows]
    if embedding is not None:
        d = embedding.weight.shape[-1]
        into = first[:, value_rows.unsqueeze(1) + 1 + torch.arange(d)]  # (k, n, d, out)
        bias = bias + torch.einsum("knd,kndo->ko", embedding.bias.double()[:, 0], into)[:, None]
        if fold_maps:
            # cos features -> each feature's map (n, m, d) -> the first layer's rows
            into = torch.einsum("knmd,kndo->knmo", embedding.weight.double(), into)
        blocks.append(into.flatten(1, 2))
    weights[0] = (torch.cat(blocks, dim=1).float(), bias.float())
    temperature = float(network.temperature)
    last, last_bias = weights[-1]
    weights[-1] = (last / temperature, last_bias / temperature)
    return weights
