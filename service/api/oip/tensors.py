"""Open Inference Protocol tensors ↔ the rows and probabilities of a model version."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.ml.preprocessing import label_key


class TensorError(Exception):
    """An input tensor that does not fit the model; answered 400 ``{"error": ...}``."""


def flatten(data: Any) -> list:
    """Row-major values of a flat or nested list."""
    if not isinstance(data, list):
        raise TensorError("tensor data must be a list")
    flat: list = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def records_from_inputs(inputs: list[dict], features: list[str], types: dict[str, str]) -> list:
    """One record per row, from one input per feature or one matrix of all the features.

    Parameters
    ----------
    inputs:
        The request's tensors (name, shape, datatype, data).
    features:
        The model's feature columns, in order.
    types:
        Feature → numeric | categorical | boolean | dropped.
    """
    if len(inputs) == 1 and inputs[0]["name"] not in types:
        return _from_matrix(inputs[0], features, types)
    rows: int | None = None
    columns: dict[str, list] = {}
    for tensor in inputs:
        name = tensor["name"]
        if name not in types:
            raise TensorError(f"unknown input {name!r}; the model's inputs are {features}")
        if name in columns:
            raise TensorError(f"input {name!r} is given twice")
        shape = tensor["shape"]
        if not shape or any(d < 0 for d in shape) or math.prod(shape[1:]) != 1:
            raise TensorError(f"input {name!r} must have shape [rows] or [rows, 1], not {shape}")
        values = flatten(tensor["data"])
        if len(values) != shape[0]:
            raise TensorError(f"input {name!r} has {len(values)} values for shape {shape}")
        if rows is not None and shape[0] != rows:
            raise TensorError(f"input {name!r} has {shape[0]} rows, the others {rows}")
        rows = shape[0]
        columns[name] = values
    if not rows:
        raise TensorError("the inputs hold no rows")
    return [{name: values[i] for name, values in columns.items()} for i in range(rows)]


def _from_matrix(tensor: dict, features: list[str], types: dict[str, str]) -> list:
    shape = tensor["shape"]
    if any(types[f] == "categorical" for f in features):
        raise TensorError(
            f"unknown input {tensor['name']!r}: this model has categorical features, so it "
            f"takes one input per feature: {features}"
        )
    if len(shape) != 2 or shape[1] != len(features) or shape[0] < 1:
        raise TensorError(
            f"a matrix input must have shape [rows, {len(features)}] (features {features}), "
            f"not {shape}"
        )
    values = flatten(tensor["data"])
    if len(values) != shape[0] * shape[1]:
        raise TensorError(f"input {tensor['name']!r} has {len(values)} values for shape {shape}")
    width = shape[1]
    return [
        dict(zip(features, values[i * width : (i + 1) * width], strict=True))
        for i in range(shape[0])
    ]


def outputs(probabilities: np.ndarray, labels: list, wanted: list[str] | None) -> list[dict]:
    """The ``probabilities`` FP32 [rows, classes] and ``label`` BYTES [rows] output tensors."""
    every = {
        "probabilities": {
            "name": "probabilities",
            "shape": list(probabilities.shape),
            "datatype": "FP32",
            "data": probabilities.astype(np.float32).ravel().tolist(),
        },
        "label": {
            "name": "label",
            "shape": [len(labels)],
            "datatype": "BYTES",
            "data": [label_key(label) for label in labels],
        },
    }
    names = wanted or list(every)
    unknown = [n for n in names if n not in every]
    if unknown:
        raise TensorError(f"unknown output {unknown[0]!r}; the outputs are {list(every)}")
    return [every[n] for n in names]


def metadata_inputs(input_schema: list[dict]) -> list[dict]:
    kinds = {"numeric": "FP32", "boolean": "BOOL", "categorical": "BYTES"}
    return [
        {"name": c["name"], "datatype": kinds.get(c["type"], "BYTES"), "shape": [-1]}
        for c in input_schema
    ]
