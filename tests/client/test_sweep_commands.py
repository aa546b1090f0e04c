"""The sweep command's parsing of --grid, --random/--param and --set values."""

import argparse

import pytest

from service.cli import _parser
from trainserve_client.sweep_commands import parse_value, search_of


def args(*argv: str) -> argparse.Namespace:
    return _parser().parse_args(["sweep", "data.csv", "--target", "y", *argv])


@pytest.mark.parametrize(
    "name, text, value",
    [
        ("hidden_layers", "64", [64]),
        ("hidden_layers", "128x2", [128, 128]),
        ("hidden_layers", "64-32x2", [64, 32, 32]),
        ("learning_rate", "1e-3", 0.001),
        ("batch_norm", "true", True),
        ("early_stopping_patience", "null", None),
        ("optimizer", "adam", "adam"),
    ],
)
def test_values(name, text, value):
    assert parse_value(name, text) == value


def test_a_grid_from_the_issue():
    search = search_of(
        args("--grid", "learning_rate=1e-3,1e-2", "--grid", "hidden_layers=64,128x2")
    )
    assert search == {
        "grid": {"learning_rate": [0.001, 0.01], "hidden_layers": [[64], [128, 128]]}
    }


def test_a_random_search():
    search = search_of(
        args(
            "--random", "6", "--seed", "3",
            "--param", "learning_rate=log_uniform:1e-4:1e-1",
            "--param", "batch_size=int:16:128",
            "--param", "hidden_layers=choice:32,64x2",
        )  # fmt: skip
    )
    assert search == {
        "random": {
            "n_trials": 6,
            "seed": 3,
            "parameters": {
                "learning_rate": {"log_uniform": [0.0001, 0.1]},
                "batch_size": {"int": [16, 128]},
                "hidden_layers": {"choice": [[32], [64, 64]]},
            },
        }
    }


@pytest.mark.parametrize(
    "argv, message",
    [
        ((), "give --grid values, or --random N"),
        (("--grid", "lr"), "NAME=VALUE"),
        (("--random", "3"), "at least one --param"),
        (("--random", "3", "--param", "lr=normal:0:1"), "not one of"),
        (("--grid", "hidden_layers=wide"), "not like 64"),
        (("--grid", "epochs=3", "--random", "2"), "give --grid values, or --random N"),
    ],
)
def test_mistakes_are_one_clear_message(argv, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        search_of(args(*argv))


def test_the_command_says_what_is_wrong_and_exits_2(capsys):
    from service.cli import main

    assert main(["sweep", "data.csv", "--target", "y", "--url", "http://127.0.0.1:1"]) == 2
    assert "give --grid values" in capsys.readouterr().err
