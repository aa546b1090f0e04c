"""Reading and writing Open Inference Protocol bodies as the real clients send them.

- tritonclient sends its JSON infer body with no Content-Type; KServe's client sends
  ``application/json``, or ``application/octet-stream`` with binary tensors. All are read.
- The binary tensor data extension: ``Inference-Header-Content-Length`` gives the
  length of the JSON header; the bytes after it belong to the inputs that declare
  ``binary_data_size``, in order. An answer with binary outputs is built the same way.
- ``Content-Encoding: gzip`` / ``deflate`` bodies are read (tritonclient's
  ``request_compression_algorithm``), never inflated past the upload limit, and an
  answer is compressed when the client asks with ``Accept-Encoding``
  (``response_compression_algorithm``).
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import orjson
from flask import Response, request

from service.api.oip.tensors import TensorError, attach_binary
from service.api.services import services
from service.errors import UnsupportedMediaType

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_MIMETYPE = "application/octet-stream"
# Content-Types an infer body may carry (none at all: tritonclient).
ACCEPTED = ("", "application/json", BINARY_MIMETYPE)
# Request parameters with a meaning of their own (the binary extension, and Triton's
# sequence, scheduling and timeout controls, which a stateless model without a queue
# accepts and ignores); every other one is the caller's and is echoed in the answer.
CONTROLS = frozenset(
    {"binary_data_output", "sequence_id", "sequence_start", "sequence_end", "priority", "timeout"}
)


def read_request() -> Any:
    """The infer request's JSON with every binary input decoded into its ``data``."""
    length = request.headers.get(HEADER_LENGTH)
    if length is None and request.mimetype not in ACCEPTED:
        raise UnsupportedMediaType(
            f"Content-Type {request.mimetype!r} is not accepted here; send JSON "
            "(application/json, or no Content-Type) or the binary tensor data extension"
        )
    raw = _decoded(request.get_data(cache=False))
    if length is None:
        header, binary = raw, b""
    else:
        if not length.isascii() or not length.isdigit() or int(length) > len(raw):
            raise TensorError(
                f"{HEADER_LENGTH} must be the JSON header's length in bytes, at most the "
                f"body's {len(raw)}"
            )
        header, binary = raw[: int(length)], memoryview(raw)[int(length) :]
    try:
        parsed = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise TensorError(f"the body is not valid JSON: {exc}") from None
    if type(parsed) is dict and type(parsed.get("inputs")) is list:
        inputs = [t for t in parsed["inputs"] if type(t) is dict]
        if len(inputs) == len(parsed["inputs"]) and all(_described(t) for t in inputs):
            attach_binary(inputs, memoryview(binary))
        elif binary:
            raise TensorError("binary data follows inputs that do not describe it")
    elif binary:
        raise TensorError("binary data follows a header without inputs")
    return parsed


def _described(tensor: dict) -> bool:
    """Whether an input has what decoding needs (the schema names anything missing)."""
    return (
        type(tensor.get("name")) is str
        and type(tensor.get("datatype")) is str
        and type(tensor.get("shape")) is list
        and all(type(d) is int for d in tensor["shape"])
        and (tensor.get("parameters") is None or type(tensor["parameters"]) is dict)
    )


def _decoded(raw: bytes) -> bytes:
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not accepted; use gzip, deflate or none"
        )
    limit = services().settings.max_request_bytes
    # gzip: a gzip header (wbits 16+); deflate: the zlib format, as HTTP means it.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise TensorError(f"the body is not valid {encoding} data: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise TensorError(f"the decompressed body is larger than the limit of {limit} bytes")
    if not inflater.eof:
        raise TensorError(f"the {encoding} body is truncated")
    return out


def echoed_parameters(parameters: dict) -> dict:
    """The caller's own request parameters, returned in the answer's ``parameters``."""
    return {k: v for k, v in parameters.items() if k not in CONTROLS}


def response(answer: dict, chunks: list[bytes]) -> Response:
    """JSON, or with binary outputs the JSON header and their bytes; compressed if asked."""
    header = orjson.dumps(answer)
    if chunks:
        out = Response(b"".join([header, *chunks]), mimetype=BINARY_MIMETYPE)
        out.headers[HEADER_LENGTH] = str(len(header))
    else:
        out = Response(header, mimetype="application/json")
    encoding = _accepted_encoding()
    if encoding is not None:
        data = out.get_data()
        out.set_data(gzip.compress(data, 6) if encoding == "gzip" else zlib.compress(data, 6))
        out.headers["Content-Encoding"] = encoding
        out.vary.add("Accept-Encoding")
    return out


def _accepted_encoding() -> str | None:
    accepted = request.headers.get("Accept-Encoding")
    if not accepted:
        return None
    for coding in ("gzip", "deflate"):
        for part in accepted.split(","):
            name, _, quality = part.strip().partition(";")
            if name.strip().lower() == coding and quality.replace(" ", "") not in ("q=0", "q=0.0"):
                return coding
    return None
