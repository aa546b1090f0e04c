"""Open Inference Protocol tensors ↔ the rows and probabilities of a model version.

Tensor data comes as JSON (``data``: a flat or nested row-major list) or, with the
binary tensor data extension, as raw bytes after the JSON header of the request body
(``parameters.binary_data_size`` on the input; little-endian, row-major; BOOL one byte
per element; BYTES a 4-byte little-endian length before each element's bytes). Outputs
are answered the same two ways: JSON ``data``, or binary when the request asks for it
(``binary_data`` on a requested output, or ``binary_data_output`` on the request).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from service.ml.preprocessing import label_key
from service.ml.tabular import ColumnType

# Datatypes with a fixed width, as little-endian NumPy types.
FIXED = {
    "BOOL": np.dtype("u1"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
OUTPUTS = ("probabilities", "label")
_LENGTH = struct.Struct("<I")


class TensorError(Exception):
    """A tensor that does not fit the protocol or the model; answered 400 ``{"error": ...}``."""


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


def elements(shape: list[int], name: str) -> int:
    """The number of elements of a shape (every dimension known)."""
    if any(d < 0 for d in shape):
        raise TensorError(f"input {name!r}: shape {shape} has an unknown (-1) dimension")
    return math.prod(shape)


def attach_binary(inputs: list[dict], binary: memoryview) -> None:
    """Give each input that declares ``binary_data_size`` its slice of ``binary``, decoded
    into ``data``, in the order of the inputs (the extension's rule); every byte must be
    claimed by an input."""
    offset = 0
    for tensor in inputs:
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        name = tensor["name"]
        if size is None:
            if "data" not in tensor:
                raise TensorError(f"input {name!r} has neither data nor binary_data_size")
            continue
        if type(size) is not int or size < 0:
            raise TensorError(f"input {name!r}: binary_data_size must be a byte count")
        if "data" in tensor:
            raise TensorError(f"input {name!r} has both data and binary_data_size")
        if offset + size > len(binary):
            raise TensorError(
                f"input {name!r}: binary_data_size {size} runs past the end of the body "
                f"({len(binary) - offset} bytes left)"
            )
        tensor["data"] = decode(tensor, binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        raise TensorError(
            f"the body has {len(binary) - offset} bytes after the last binary input"
        )


def decode(tensor: dict, raw: memoryview) -> list:
    """The values of one binary input tensor, as a flat list of Python scalars."""
    name, datatype, shape = tensor["name"], tensor["datatype"], tensor["shape"]
    count = elements(shape, name)
    if datatype == "BYTES":
        values = _decode_bytes(raw, name)
        if len(values) != count:
            raise TensorError(f"input {name!r} has {len(values)} elements for shape {shape}")
        return values
    dtype = FIXED.get(datatype)
    if dtype is None:
        raise TensorError(f"input {name!r}: datatype {datatype} cannot be sent as binary here")
    if len(raw) != count * dtype.itemsize:
        raise TensorError(
            f"input {name!r}: {len(raw)} bytes for shape {shape} of {datatype} "
            f"({count * dtype.itemsize} expected)"
        )
    array = np.frombuffer(raw, dtype=dtype)
    if datatype == "BOOL":
        if (array > 1).any():
            raise TensorError(f"input {name!r}: a BOOL element must be the byte 0 or 1")
        return array.astype(bool).tolist()
    return array.tolist()


def _decode_bytes(raw: memoryview, name: str) -> list[str]:
    values, offset, end = [], 0, len(raw)
    while offset < end:
        if offset + 4 > end:
            raise TensorError(f"input {name!r}: element {len(values)} has a truncated length")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > end:
            raise TensorError(
                f"input {name!r}: element {len(values)} claims {length} bytes, "
                f"{end - offset} are left"
            )
        try:
            values.append(bytes(raw[offset : offset + length]).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise TensorError(
                f"input {name!r}: element {len(values)} is not UTF-8 text "
                f"(invalid byte at offset {exc.start})"
            ) from None
        offset += length
    return values


def records_from_inputs(inputs: list[dict], features: list[str], types: dict[str, str]) -> list:
    """One record per row, from one input per feature or one matrix of all the features.

    Parameters
    ----------
    inputs:
        The request's tensors (name, shape, datatype, data), binary data decoded.
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
    if any(types[f] == ColumnType.CATEGORICAL for f in features):
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


def requested_outputs(request: dict) -> list[tuple[str, bool, int | None]]:
    """``(name, binary, classification count)`` for each output to answer, in order.

    No ``outputs``: every output, binary if the request's ``binary_data_output`` is
    true. A requested output's own ``binary_data`` overrides the request's default.
    """
    parameters = request.get("parameters") or {}
    default = parameters.get("binary_data_output", False)
    if type(default) is not bool:
        raise TensorError("parameters.binary_data_output must be true or false")
    wanted = request.get("outputs")
    if not wanted:
        return [(name, default, None) for name in OUTPUTS]
    answer = []
    for output in wanted:
        name, own = output["name"], output.get("parameters") or {}
        if name not in OUTPUTS:
            raise TensorError(f"unknown output {name!r}; the outputs are {list(OUTPUTS)}")
        binary = own.get("binary_data", default)
        if type(binary) is not bool:
            raise TensorError(f"output {name!r}: binary_data must be true or false")
        count = own.get("classification")
        if count is not None:
            if type(count) is not int or count < 1:
                raise TensorError(f"output {name!r}: classification must be a count ≥ 1")
            if name != "probabilities":
                raise TensorError(
                    f"output {name!r}: classification applies to 'probabilities' only"
                )
        answer.append((name, binary, count))
    return answer


def output_tensors(
    probabilities: np.ndarray,
    labels: list,
    classes: list,
    wanted: list[tuple[str, bool, int | None]],
) -> tuple[list[dict], list[bytes]]:
    """The output tensors (JSON objects) and, in order, the raw bytes of the binary ones."""
    tensors: list[dict] = []
    chunks: list[bytes] = []
    for name, binary, count in wanted:
        if count is not None:
            datatype, shape, values = _classification(probabilities, classes, count)
        elif name == "probabilities":
            datatype, shape = "FP32", list(probabilities.shape)
            values = probabilities.astype("<f4", copy=False)
        else:
            datatype, shape, values = "BYTES", [len(labels)], [label_key(x) for x in labels]
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if binary:
            raw = encode(datatype, values)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = values.ravel().tolist() if datatype != "BYTES" else values
        tensors.append(tensor)
    return tensors, chunks


def _classification(probabilities: np.ndarray, classes: list, count: int):
    """Triton's classification extension: the ``count`` likeliest classes of each row as
    BYTES ``"<probability>:<index>:<label>"``, likeliest first."""
    count = min(count, probabilities.shape[1])
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :count]
    values = [
        f"{probabilities[row, i]:.6f}:{i}:{label_key(classes[i])}"
        for row in range(probabilities.shape[0])
        for i in order[row]
    ]
    return "BYTES", [probabilities.shape[0], count], values


def encode(datatype: str, values: Any) -> bytes:
    """The extension's binary form of an output tensor."""
    if datatype == "BYTES":
        parts = []
        for value in values:
            data = value.encode("utf-8")
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(values, dtype=FIXED[datatype]).tobytes()


def metadata_inputs(input_schema: list[dict]) -> list[dict]:
    kinds = {
        ColumnType.NUMERIC: "FP32",
        ColumnType.BOOLEAN: "BOOL",
        ColumnType.CATEGORICAL: "BYTES",
    }
    return [
        {"name": c["name"], "datatype": kinds.get(c["type"], "BYTES"), "shape": [-1]}
        for c in input_schema
    ]
