"""The one table of hyperparameters, and the four things generated from it: the ML core's
``TrainingConfig``, the marshmallow schema, its OpenAPI document (which the dashboard's
training form reads) and the flags of ``trainserve train``. Each is checked against the
table row by row, so they agree with each other."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
from marshmallow import ValidationError

from service.api.jobs.schemas import HyperparametersSchema
from service.ml.hyperparameters import BY_NAME, HYPERPARAMETERS, RECIPES, Kind, TrainingConfig
from service.ml.network import ACTIVATIONS
from service.ml.training import LR_SCHEDULERS, OPTIMIZERS
from trainserve_client.commands import add_hyperparameter_flags


def _api_default(h):
    return list(h.default) if h.kind is Kind.INT_LIST and h.default is not None else h.default


def _outside(h):
    """Values just beyond each bound of a numeric row."""
    step = 1 if h.kind in (Kind.INT, Kind.INT_LIST) else 1e-9 * max(1.0, abs(h.maximum or 1))
    values = []
    if h.minimum is not None:
        values.append(h.minimum if h.exclusive_minimum else h.minimum - step)
    if h.maximum is not None:
        values.append(h.maximum if h.exclusive_maximum else h.maximum + step)
    return values


def _inside(h):
    values = []
    if h.minimum is not None and not h.exclusive_minimum:
        values.append(h.minimum)
    if h.maximum is not None and not h.exclusive_maximum:
        values.append(h.maximum)
    return values


def test_the_table_is_well_formed():
    assert len(BY_NAME) == len(HYPERPARAMETERS), "two rows share a name"
    for h in HYPERPARAMETERS:
        assert h.help, h.name
        assert (h.kind is Kind.CHOICE) == bool(h.choices), h.name
        if h.kind is Kind.CHOICE:
            assert h.default in h.choices or (h.recipe and h.default is None), h.name
        if h.default is None or h.initial() is None:
            assert h.nullable or h.recipe, h.name
    recipe_rows = sorted(h.name for h in HYPERPARAMETERS if h.recipe)
    for name, values in RECIPES.items():
        assert sorted(values) == recipe_rows, name
        assert name in BY_NAME["recipe"].choices
        for knob, value in values.items():  # every recipe value passes its row's checks
            HyperparametersSchema().load({knob: list(value) if isinstance(value, tuple) else value})


def test_the_ml_core_knows_every_choice():
    assert tuple(ACTIVATIONS) == BY_NAME["activation"].choices
    assert OPTIMIZERS == BY_NAME["optimizer"].choices
    assert LR_SCHEDULERS == BY_NAME["lr_scheduler"].choices


def test_the_config_has_one_field_per_row_with_its_default():
    fields = dataclasses.fields(TrainingConfig)
    assert [f.name for f in fields] == [h.name for h in HYPERPARAMETERS]
    config = TrainingConfig()
    for h in HYPERPARAMETERS:
        expected = RECIPES["plain"][h.name] if h.recipe else h.initial()
        assert getattr(config, h.name) == expected, h.name
    assert TrainingConfig.from_json(config.to_json()) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3  # type: ignore[misc]


def test_a_config_stored_before_the_recipes_is_the_plain_recipe():
    stored = TrainingConfig(epochs=7).to_json()
    for name in ("recipe", "network", "label_smoothing", "folds", "embedding"):
        del stored[name]
    assert TrainingConfig.from_json(stored) == TrainingConfig(epochs=7)
    assert TrainingConfig.from_json(stored).network == "mlp"


def test_a_config_stored_before_a_knob_existed_takes_its_default():
    stored = TrainingConfig(epochs=7).to_json()
    del stored["min_delta"]
    assert TrainingConfig.from_json(stored) == TrainingConfig(epochs=7)


def test_the_schema_loads_every_default_and_keeps_every_bound():
    schema = HyperparametersSchema()
    assert list(schema.fields) == [h.name for h in HYPERPARAMETERS]
    assert schema.load({}) == {h.name: _api_default(h) for h in HYPERPARAMETERS}
    loaded = schema.load({})
    loaded["seed"] = 0
    assert TrainingConfig.from_json(loaded) == TrainingConfig(recipe=loaded["recipe"])
    for h in HYPERPARAMETERS:
        wrap = (lambda v: [v]) if h.kind is Kind.INT_LIST else (lambda v: v)
        for value in _inside(h):
            schema.load({h.name: wrap(value)})
        for value in _outside(h):
            with pytest.raises(ValidationError) as caught:
                schema.load({h.name: wrap(value)})
            assert h.name in caught.value.messages, (h.name, value)
        for choice in h.choices:
            assert schema.load({h.name: choice})[h.name] == choice
        if h.choices:
            with pytest.raises(ValidationError):
                schema.load({h.name: "no-such-choice"})
        if h.nullable or h.recipe:
            assert schema.load({h.name: None})[h.name] is None
        else:
            with pytest.raises(ValidationError):
                schema.load({h.name: None})
    with pytest.raises(ValidationError, match="Unknown field"):
        schema.load({"no_such_knob": 1})


def test_the_openapi_document_shows_every_row(client):
    properties = client.get("/openapi.json").get_json()["components"]["schemas"]["Hyperparameters"][
        "properties"
    ]
    assert list(properties) == [h.name for h in HYPERPARAMETERS]
    for h in HYPERPARAMETERS:
        doc = properties[h.name]
        assert doc["default"] == _api_default(h), h.name
        assert doc["description"] == h.help, h.name
        assert doc.get("nullable", False) == (h.nullable or h.recipe), h.name
        bounds = doc["items"] if h.kind is Kind.INT_LIST else doc
        if h.kind not in (Kind.CLASS_WEIGHT, Kind.INT_OR_AUTO):
            assert bounds.get("minimum") == h.minimum, h.name
            assert bounds.get("maximum") == h.maximum, h.name
        assert doc.get("maxItems") == h.max_items, h.name
        enum = list(h.choices) + ([None] if h.nullable or h.recipe else []) if h.choices else None
        assert doc.get("enum") == enum, h.name
        assert (
            doc.get("type")
            == {
                Kind.INT: "integer",
                Kind.FLOAT: "number",
                Kind.BOOL: "boolean",
                Kind.CHOICE: "string",
                Kind.INT_LIST: "array",
                Kind.CLASS_WEIGHT: None,  # oneOf a string or an object
                Kind.INT_OR_AUTO: None,  # oneOf an integer or "auto"
            }[h.kind]
        ), h.name


def _flag_text(h) -> list[str]:
    """The flag of ``h`` set to its API default, as a user would type it."""
    if h.kind is Kind.BOOL and h.recipe:
        return []  # --x / --no-x, or neither: the recipe's
    if h.kind is Kind.BOOL:
        return [h.flag]
    if h.default is None:
        return [h.flag, "none"]
    if h.kind is Kind.INT_LIST:
        return [h.flag, ",".join(map(str, h.default))]
    return [h.flag, str(h.default)]


def test_the_cli_has_one_flag_per_row_and_sends_only_those_given():
    parser = argparse.ArgumentParser()
    add_hyperparameter_flags(parser)
    assert vars(parser.parse_args([])) == {}
    text = [word for h in HYPERPARAMETERS for word in _flag_text(h)]
    given = vars(parser.parse_args(text))
    expected = {
        h.name: _api_default(h) for h in HYPERPARAMETERS if not (h.kind is Kind.BOOL and h.recipe)
    }
    expected["batch_norm"] = True  # a switch: present means on
    assert given == expected
    assert vars(parser.parse_args(["--no-scale-layer", "--early-stopping"])) == {
        "scale_layer": False,
        "early_stopping": True,
    }
    assert vars(parser.parse_args(["--batch-size", "auto"])) == {"batch_size": "auto"}
    assert HyperparametersSchema().load(given)["batch_norm"] is True
    assert vars(parser.parse_args(["--class-weight", '{"a": 2}'])) == {"class_weight": {"a": 2}}
    assert vars(parser.parse_args(["--early-stopping-patience", "none"])) == {
        "early_stopping_patience": None
    }
    help_text = parser.format_help()
    for h in HYPERPARAMETERS:
        assert h.flag in help_text


def test_the_readme_lists_every_row():
    from pathlib import Path

    text = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    section = text.split("Hyperparameters (unknown ones are a 400)", 1)[1].split("\n\n", 2)[1]
    names = [line.split("`")[1] for line in section.splitlines() if line.startswith("| `")]
    assert names == [h.name for h in HYPERPARAMETERS]
