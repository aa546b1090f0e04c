"""Exports of a stored model: a zip a user can run without trainserve.

Every export is a zip with the stored description (``model.json``: architecture,
preprocessing and classes, exactly as stored), its preprocessing alone
(``preprocessing.json``), a ``README.md`` of the input schema, and the network in the
format asked for:

- ``safetensors``: ``weights.safetensors``, the stored weights byte for byte; the network
  is ``service.ml.network.build_mlp`` of the architecture and returns logits;
- ``onnx``: ``model.onnx``, input ``features`` (float32 ``[rows, n_inputs]``, the encoded
  matrix, any number of rows), output ``probabilities`` (float32 ``[rows, n_classes]``,
  softmax inside the graph); classes and preprocessing are also in its metadata_props;
- ``torchscript``: ``model.torchscript.pt``, the same network and softmax, traced and
  saved with ``torch.jit.save``; ``torch.jit.load`` runs it without this code.

ONNX needs the ``onnx`` extra (onnx and onnxscript); without it :class:`MissingDependency`.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import warnings
import zipfile
from typing import Any

import torch
from torch import nn

from service.ml.errors import MissingDependency
from service.ml.inference import ModelBundle
from service.ml.preprocessing import ColumnEncoding, label_key

FORMATS = ("safetensors", "onnx", "torchscript")
INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
_EXPORT_LOCK = threading.Lock()
NETWORK_FILES = {
    "safetensors": "weights.safetensors",
    "onnx": "model.onnx",
    "torchscript": "model.torchscript.pt",
}
# Fixed timestamps make the same model export to the same bytes.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


class Probabilities(nn.Module):
    """The network followed by softmax: encoded features in, class probabilities out."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(features), dim=1)


def export_zip(
    bundle: ModelBundle, description: dict[str, Any], weights: bytes, fmt: str, title: str
) -> bytes:
    """The zip of one stored model in ``fmt`` (one of :data:`FORMATS`).

    Parameters
    ----------
    bundle:
        The model, loaded from ``description`` and ``weights``.
    description, weights:
        The model as stored: the JSON description and the safetensors bytes.
    fmt:
        ``safetensors``, ``onnx`` or ``torchscript``.
    title:
        What the README calls the model, e.g. ``iris version 2``.
    """
    if fmt == "safetensors":
        network = weights
    elif fmt == "onnx":
        network = to_onnx(bundle)
    elif fmt == "torchscript":
        network = to_torchscript(bundle)
    else:
        raise ValueError(f"unknown export format {fmt!r}")
    files = {
        NETWORK_FILES[fmt]: network,
        "model.json": _json(description),
        "preprocessing.json": _json(description["preprocessing"]),
        "README.md": readme(bundle, fmt, title).encode(),
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, _ZIP_TIME), data, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def to_onnx(bundle: ModelBundle) -> bytes:
    """The network and softmax as ONNX, with a dynamic number of rows."""
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise MissingDependency(
            "ONNX export needs the onnx extra: pip install 'trainserve[onnx]'"
        ) from None
    example = torch.zeros(2, bundle.arch.n_inputs)
    exporter_log = logging.getLogger("torch.onnx")
    # One export at a time per process: the warning filters and the logger level below
    # are process-wide, and two exports interleaving could leave them changed.
    with _EXPORT_LOCK, warnings.catch_warnings():
        level = exporter_log.level
        # torch's own exporter code warns about its internals' deprecations, and logs a
        # warning per torchvision operator it cannot register (none of which an MLP uses).
        # Both settings are process-wide: under gthread workers another thread's warnings
        # of these kinds are hidden for the export's second or two too.
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
        exporter_log.setLevel(logging.ERROR)
        try:
            program = _export_onnx(bundle, example)
        finally:
            exporter_log.setLevel(level)
    model = program.model_proto
    onnx.helper.set_model_props(
        model,
        {
            "classes": json.dumps(list(bundle.classes)),
            "preprocessing": json.dumps(bundle.encoder.to_json()),
            "description": "input features: the encoded float32 matrix (see preprocessing); "
            "output probabilities: softmax over the classes, in the order of classes",
        },
    )
    return model.SerializeToString()


def _export_onnx(bundle: ModelBundle, example: torch.Tensor) -> torch.onnx.ONNXProgram:
    return torch.onnx.export(
        Probabilities(bundle.network).eval(),
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: torch.export.Dim("rows")},),
        verbose=False,
    )


def to_torchscript(bundle: ModelBundle) -> bytes:
    """The network and softmax traced to TorchScript, as ``torch.jit.save`` writes it."""
    example = torch.zeros(2, bundle.arch.n_inputs)
    out = io.BytesIO()
    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export, whose files need this torch
        # to load; a TorchScript file loads with torch.jit.load in any recent torch.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(Probabilities(bundle.network).eval(), example)
        torch.jit.save(traced, out)
    return out.getvalue()


def readme(bundle: ModelBundle, fmt: str, title: str) -> str:
    """The input schema and how a row becomes the network's input, for a person."""
    classes = ", ".join(f"`{label_key(c)}`" for c in bundle.classes)
    lines = [
        f"# {title}",
        "",
        f"Exported by trainserve as `{fmt}`. Files:",
        "",
        *_file_lines(fmt),
        "",
        "## Input: one row of features",
        "",
        "A row is a mapping of feature name to value. A feature that is absent, empty or "
        "one of `NA`, `N/A`, `NaN`, `nan`, `null`, `NULL`, `None` is missing; missing "
        "values are handled as at training (below), never refused.",
        "",
        "| feature | type | network inputs | encoding |",
        "| --- | --- | --- | --- |",
        *(_column_line(column) for column in bundle.encoder.columns),
        "",
        "## From a row to the network's input",
        "",
        f"The network takes a float32 matrix of shape `[rows, {bundle.encoder.n_inputs}]`: "
        "for each feature in the order of the table above, its inputs side by side "
        "(a `dropped` feature has none). Per type:",
        "",
        "- **numeric**: a missing value becomes `median`; then `(x - mean) / std`, or, "
        'where `scaling` is `"quantile"`, linear interpolation of x from `quantiles` '
        "(ascending) to `scores`, clamped to the first and last score (`numpy.interp`). "
        "With `indicator` true, one more input follows: 1 if the value was missing, "
        "else 0.",
        "- **boolean**: true → 1, false → 0, missing → `fill`; with `indicator` true, one "
        "more input: 1 if missing, else 0.",
        "- **categorical**: one-hot over `categories` (in that order) plus one last slot "
        "shared by missing values and values never seen in training. With "
        '`numeric_codes` true the values are numbers used as names: `3`, `3.0` and `"3"` '
        "are all the category `3`.",
        "",
        "The table rounds the numbers; `preprocessing.json` holds them exactly for every "
        "feature (`columns`, in input order, with `type`, `median`, `mean`, `std`, `fill`, "
        "`categories`, `indicator`, `numeric_codes`, `scaling`, `quantiles`, `scores`).",
        "",
        "## Output",
        "",
        f"Classes, in output order: {classes}.",
        "",
        *_output_lines(fmt, bundle.arch.kind),
        "The predicted label is the class of the largest probability.",
        "",
    ]
    return "\n".join(lines)


def _file_lines(fmt: str) -> list[str]:
    network = {
        "safetensors": "- `weights.safetensors`: the weights, as trainserve stores them.",
        "onnx": f"- `model.onnx`: the network with softmax; input `{INPUT_NAME}`, output "
        f"`{OUTPUT_NAME}`. Its metadata_props repeat the classes and the preprocessing.",
        "torchscript": "- `model.torchscript.pt`: the network with softmax, for `torch.jit.load`.",
    }[fmt]
    return [
        network,
        "- `model.json`: the stored description: `architecture`, `preprocessing`, `classes`.",
        "- `preprocessing.json`: the feature encoder alone.",
    ]


def _output_lines(fmt: str, kind: str = "mlp") -> list[str]:
    if fmt == "safetensors" and kind == "tabular":
        return [
            "The weights are those of trainserve's tabular network "
            "(`service.ml.network.TabularNet` of `architecture` in `model.json`): "
            "smooth clipping and periodic embeddings of the numeric inputs, a scale per "
            "input, `ensemble_size` members of NT-parametrised layers, and a fitted "
            "`temperature`. It returns the log of the members' mean probability: "
            "softmax over the last axis gives the probabilities.",
            "",
        ]
    if fmt == "safetensors":
        return [
            "The weights are those of a PyTorch `nn.Sequential` built from `architecture` "
            "in `model.json`: for each width in `hidden_layers`, `Linear`, then "
            "`BatchNorm1d` if `batch_norm`, then the `activation`, then `Dropout` if "
            "`dropout` > 0 (inactive at prediction); a last `Linear` to one output per "
            "class (activations as PyTorch defines them: `leaky_relu` slope 0.01, exact "
            "`gelu`). Keys are that module's `state_dict` names (`0.weight`, `0.bias`, ...). "
            "The network returns **logits**: apply softmax over the last axis to get "
            "the probabilities.",
            "",
        ]
    return [
        f"`{OUTPUT_NAME}` is float32 `[rows, classes]`: softmax is inside the model, each "
        "row sums to 1.",
        "",
    ]


def _column_line(column: ColumnEncoding) -> str:
    if column.type == "numeric" and column.scaling == "quantile":
        encoding = (
            f"median {column.median:g} for missing, then linear interpolation from the "
            f"{len(column.quantiles)} `quantiles` to the `scores` of preprocessing.json "
            "(clamped to the end scores)"
        )
    elif column.type == "numeric":
        encoding = f"median {column.median:g}, mean {column.mean:g}, std {column.std:g}"
    elif column.type == "boolean":
        encoding = f"missing → {column.fill:g}"
    elif column.type == "categorical":
        encoding = "one-hot: " + ", ".join(f"`{_cell(c)}`" for c in column.categories)
        encoding += ", then missing/unseen"
    else:
        encoding = column.note or "not used"
    if column.indicator:
        encoding += "; missing indicator"
    return f"| `{_cell(column.name)}` | {column.type} | {column.width} | {encoding} |"


def _cell(text: str) -> str:
    """Text that cannot break a Markdown table row or its code span."""
    return text.replace("|", "\\|").replace("`", "'")


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True).encode()
