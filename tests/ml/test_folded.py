"""The folded predict path of the tabular network (service/ml/folded.py) against the
network's own forward: every shape of the network, extreme and missing inputs, bagged
members, the bundle's switch between the two, determinism and export parity."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from service.ml.export import to_onnx, to_torchscript
from service.ml.folded import FUNCTIONS, FoldedTabular
from service.ml.inference import FOLDED_MAX_ROWS, ModelBundle
from service.ml.network import ACTIVATIONS, Architecture, build_network
from service.ml.pipeline import prepare, train_bundle
from service.ml.preprocessing import FLOAT32_MAX
from tests.ml.test_recipes import TYPES, _prepared, _table, small_tabular

TOLERANCE = 1e-5  # issue 13: predict identical to the network's forward to 1e-5


def reference(network: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """What predict computed before the folded path: softmax of the forward, float64."""
    with torch.inference_mode():
        return torch.softmax(network(torch.from_numpy(x)).double(), dim=1).numpy()


def network_of(seed: int = 0, **shape) -> tuple[Architecture, torch.nn.Module]:
    """A tabular network in eval mode whose folded constants are all non-trivial: random
    scale layer, embedding biases and temperature (training leaves them so)."""
    values = {
        "n_inputs": 9,
        "n_classes": 4,
        "hidden_layers": (16, 8),
        "activation": "selu",
        "dropout": 0.1,
        "kind": "tabular",
        "numeric_inputs": (0, 3, 5),
        "smooth_clip": True,
        "embedding": "periodic",
        "embedding_frequencies": 4,
        "embedding_dim": 3,
        "scale_layer": True,
        "ensemble_size": 1,
    }
    arch = Architecture(**{**values, **shape})
    torch.manual_seed(seed)
    network = build_network(arch).eval()
    with torch.no_grad():
        if network.scale is not None:
            network.scale.uniform_(0.2, 2.0)
        if network.embedding is not None:
            network.embedding.frequency.mul_(10)  # trained frequencies grow
        for layer in [*network.hidden, network.head]:
            if hasattr(layer, "bias"):
                layer.bias.normal_(0, 0.5)
        network.temperature.fill_(1.7)
    return arch, network


def inputs(arch: Architecture, rows: int = 24, seed: int = 1) -> np.ndarray:
    """Encoded rows: numeric inputs of every size the encoder can produce (it clips to
    ±FLOAT32_MAX), the other inputs 0/1 like one-hot slots, flags and indicators."""
    rng = np.random.default_rng(seed)
    x = (rng.random((rows, arch.n_inputs)) < 0.4).astype(np.float32)
    numeric = list(arch.numeric_inputs)
    x[:, numeric] = rng.normal(scale=3, size=(rows, len(numeric)))
    edges = [0.0, -0.0, 1e-38, -3.0, 3.0, 50.0, -1e6, 3e7, 1e19, -4e19, 1e30, FLOAT32_MAX]
    edges += [-FLOAT32_MAX]
    for row, value in enumerate(edges[: len(x)]):
        x[row, numeric] = value
    return x


SHAPES = [
    {},
    {"ensemble_size": 3},
    {"squash": "asinh"},
    {"squash": "asinh", "ensemble_size": 2},
    {"smooth_clip": False},  # the tabular network on standard scaling: inputs unsquashed
    {"embedding": "none"},
    {"embedding": "none", "smooth_clip": False, "scale_layer": False},
    {"scale_layer": False, "ensemble_size": 3},
    {"numeric_inputs": ()},  # only categorical and boolean inputs
    {"numeric_inputs": tuple(range(9))},  # only numeric inputs
    {"hidden_layers": (12,)},
    {"hidden_layers": ()},  # the head alone is the first layer (and takes 1/T)
    {"n_classes": 2, "ensemble_size": 5},
]


@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) or "default" for s in SHAPES])
def test_folded_probabilities_match_the_network(shape):
    arch, network = network_of(**shape)
    folded = FoldedTabular(network, arch.activation)
    for rows in (1, 3, 24):
        x = inputs(arch, rows)
        expected = reference(network, x)
        got = folded.probabilities(x)
        assert got.dtype == np.float64 and got.shape == (rows, arch.n_classes)
        finite = np.isfinite(expected).all(axis=1)
        np.testing.assert_allclose(got[finite], expected[finite], rtol=0, atol=TOLERANCE)
        # Unsquashed inputs of 1e30 overflow the network's first layer: NaN both ways.
        assert np.array_equal(np.isfinite(got).all(axis=1), finite)
        assert finite.all() or not arch.smooth_clip


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_activation_folds(activation):
    assert set(FUNCTIONS) == set(ACTIVATIONS)
    arch, network = network_of(activation=activation, ensemble_size=2)
    x = inputs(arch)
    np.testing.assert_allclose(
        FoldedTabular(network, activation).probabilities(x),
        reference(network, x),
        rtol=0,
        atol=TOLERANCE,
    )


def test_folded_is_deterministic_and_independent_of_the_network_object():
    arch, network = network_of(ensemble_size=3)
    x = inputs(arch, 5)
    first = FoldedTabular(network, arch.activation)
    again = FoldedTabular(build_network(arch).eval(), arch.activation)
    again_state = build_network(arch).eval()
    again_state.load_state_dict(network.state_dict())
    twin = FoldedTabular(again_state, arch.activation)
    assert np.array_equal(first.probabilities(x), first.probabilities(x))
    assert np.array_equal(first.probabilities(x), twin.probabilities(x))
    assert not np.allclose(first.probabilities(x), again.probabilities(x))
    # Folding leaves the network (which exports and checkpoints read) as it was.
    for name, value in network.state_dict().items():
        assert torch.equal(value, again_state.state_dict()[name]), name


@pytest.mark.parametrize("folds", [0, 3])
def test_bundle_predicts_small_requests_folded_and_large_ones_with_the_network(folds):
    """A trained bundle (numeric with missing values, categorical, boolean; one network
    or three bagged members): records and encoded rows, on both sides of the switch."""
    config = small_tabular(folds=folds, ensemble_size=1)
    bundle, _ = train_bundle(_prepared(config), config)
    assert bundle.folded is not None and bundle.folded.k == max(folds, 1)
    frame = _table(120, seed=4).drop(columns="species")
    x = bundle.encoder.transform(frame)
    assert np.isnan(frame["x2"]).any() and frame["colour"].isna().any()
    for rows in (1, 2, FOLDED_MAX_ROWS, FOLDED_MAX_ROWS + 1, 120):
        np.testing.assert_allclose(
            bundle.predict_inputs(x[:rows]), reference(bundle.network, x[:rows]), atol=TOLERANCE
        )
    large = bundle.predict_inputs(x)
    assert np.array_equal(large, reference(bundle.network, x))  # the network's own path
    records = [
        {"x1": 0.5, "x2": None, "colour": "red", "flag": True},
        {"x1": -1e300, "colour": "never seen"},
        {},
    ]
    expected = reference(bundle.network, bundle.encoder.transform(_frame(records)))
    got = bundle.predict_records(records, max_columns=100, max_cell_chars=100)
    np.testing.assert_allclose(got, expected, atol=TOLERANCE)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-12)


def test_plain_bundles_keep_the_network_path():
    config = small_tabular(recipe="plain", hidden_layers=(8,), epochs=1)
    data = prepare(_table(), "species", TYPES, validation_fraction=0.2, seed=1)
    bundle, _ = train_bundle(data, config)
    assert bundle.folded is None
    x = data.x_val.numpy()[:1]
    assert np.array_equal(bundle.predict_inputs(x), reference(bundle.network, x))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_exports_match_the_folded_predict():
    import onnxruntime

    config = small_tabular()
    bundle, _ = train_bundle(_prepared(config), config)
    loaded = ModelBundle.load(bundle.describe(), bundle.weights())
    x = _prepared(config).x_val[:FOLDED_MAX_ROWS]
    predicted = loaded.predict_inputs(x.numpy())
    scripted = torch.jit.load(io.BytesIO(to_torchscript(bundle)))
    np.testing.assert_allclose(scripted(x).detach().numpy(), predicted, atol=TOLERANCE)
    session = onnxruntime.InferenceSession(to_onnx(bundle))
    (onnx_out,) = session.run(None, {"features": x.numpy()})
    np.testing.assert_allclose(onnx_out, predicted, atol=TOLERANCE)


def _frame(records: list[dict]):
    import pandas as pd

    from service.ml.tabular import coerce_columns

    text = pd.DataFrame({name: [r.get(name) for r in records] for name in TYPES}, dtype=object).map(
        lambda v: None if v is None else str(v).lower() if isinstance(v, bool) else str(v)
    )
    return coerce_columns(text, TYPES, field="records")


@pytest.mark.parametrize("k", [1, 4])
def test_several_members_keep_the_embedding_maps_apart(k):
    """One network folds each feature's map (frequencies -> dim) into the first layer;
    several members apply it apart, so their first layer reads dim rows a feature, not
    frequencies rows (the weights a one-row request reads: 4 members' 3.6 -> 2.5 MB)."""
    arch, network = network_of(ensemble_size=k, embedding_frequencies=16, embedding_dim=3)
    folded = FoldedTabular(network, arch.activation)
    n = len(arch.numeric_inputs)
    per_feature = 16 if k == 1 else 3
    first = folded.layers[0][0]
    # The other inputs, each squashed numeric one (its raw value's rows would be zero),
    # then its embedding.
    assert first.shape[-2] == (arch.n_inputs - n) + n + n * per_feature
    assert (folded.maps is None) == (k == 1)
    x = inputs(arch, 7)
    np.testing.assert_allclose(
        folded.probabilities(x), reference(network, x), rtol=0, atol=TOLERANCE
    )
