"""The pure parts of sweeps: search-space expansion and the early-termination rules."""

from __future__ import annotations

import pytest

from service.usecases.search import grid_size, grid_trials, random_trials, source_field
from service.usecases.stopping import Curve, StoppingRule, best_so_far, decide


def test_a_grid_is_the_cartesian_product_first_parameter_slowest():
    grid = {"learning_rate": [0.1, 0.01], "hidden_layers": [[8], [16, 16], [32]]}
    trials = grid_trials(grid)
    assert grid_size(grid) == len(trials) == 6
    assert trials[:3] == [
        {"learning_rate": 0.1, "hidden_layers": [8]},
        {"learning_rate": 0.1, "hidden_layers": [16, 16]},
        {"learning_rate": 0.1, "hidden_layers": [32]},
    ]
    assert trials[3]["learning_rate"] == 0.01
    trials[0]["hidden_layers"].append(1)  # copies: the grid itself is untouched
    assert grid["hidden_layers"][0] == [8]


def test_random_draws_respect_each_distribution_and_the_seed():
    parameters = {
        "learning_rate": {"log_uniform": [1e-5, 1e-1]},
        "dropout": {"uniform": [0.1, 0.2]},
        "batch_size": {"int": [8, 10]},
        "activation": {"choice": ["relu", "gelu"]},
    }
    trials = random_trials(parameters, 400, seed=3)
    assert trials == random_trials(parameters, 400, seed=3)
    assert trials != random_trials(parameters, 400, seed=4)
    rates = [t["learning_rate"] for t in trials]
    assert all(1e-5 <= r <= 1e-1 for r in rates)
    # log-uniform: about as many draws per decade, so the median is near 1e-3
    median = sorted(rates)[200]
    assert 10**-3.5 < median < 10**-2.5
    assert {t["batch_size"] for t in trials} == {8, 9, 10}
    assert all(0.1 <= t["dropout"] <= 0.2 for t in trials)
    assert {t["activation"] for t in trials} == {"relu", "gelu"}


def test_a_trials_error_is_named_where_its_value_came_from():
    grid = {"grid": {"epochs": [3, 500]}}
    assert source_field(grid, "hyperparameters.epochs", {"epochs": 500}) == "search.grid.epochs[1]"
    assert source_field(grid, "hyperparameters.seed", {"epochs": 3}) == "hyperparameters.seed"
    rnd = {"random": {"parameters": {"hidden_layers": {"choice": [[8]]}}}}
    assert (
        source_field(rnd, "hyperparameters.hidden_layers", {"hidden_layers": [8]})
        == "search.random.parameters.hidden_layers"
    )
    assert source_field(rnd, "target", {}) == "target"


def curve(*values: float) -> dict[int, float]:
    return {epoch: value for epoch, value in enumerate(values, start=1)}


MEDIAN = StoppingRule("median", grace_epochs=2, min_trials=2)


def test_best_so_far_looks_only_at_epochs_up_to_the_one_asked():
    values = curve(0.9, 0.5, 0.7, 0.2)
    assert best_so_far(values, 3, "min") == 0.5
    assert best_so_far(values, 4, "min") == 0.2
    assert best_so_far(values, 2, "max") == 0.9
    assert best_so_far({}, 3, "min") is None


def test_median_rule_stops_a_trial_worse_than_the_median_of_the_others():
    others = [Curve(curve(1.0, 0.6, 0.5)), Curve(curve(1.0, 0.7, 0.6)), Curve(curve(1.1, 0.9))]
    reason = decide(MEDIAN, "min", "val_loss", 2, curve(1.2, 1.0), others)
    assert reason and "median stopping rule" in reason and "0.7" in reason
    # Better than the median: goes on.
    assert decide(MEDIAN, "min", "val_loss", 2, curve(1.0, 0.65), others) is None
    # max mode: accuracy below the median stops.
    accuracies = [Curve(curve(0.5, 0.8)), Curve(curve(0.5, 0.9))]
    assert decide(MEDIAN, "max", "val_accuracy", 2, curve(0.4, 0.6), accuracies)
    assert decide(MEDIAN, "max", "val_accuracy", 2, curve(0.4, 0.95), accuracies) is None


def test_median_rule_has_a_grace_period_and_needs_enough_other_trials():
    others = [Curve(curve(0.1, 0.1, 0.1)), Curve(curve(0.1, 0.1, 0.1))]
    hopeless = curve(9.0, 9.0, 9.0)
    assert decide(MEDIAN, "min", "val_loss", 1, hopeless, others) is None  # before grace
    assert decide(MEDIAN, "min", "val_loss", 2, hopeless, others) is not None
    assert decide(MEDIAN, "min", "val_loss", 2, hopeless, others[:1]) is None  # too few
    # A running trial that has not reached the epoch does not count; a finished one does.
    behind = [Curve(curve(0.1)), Curve(curve(0.1))]
    assert decide(MEDIAN, "min", "val_loss", 2, hopeless, behind) is None
    ended = [Curve(curve(0.1), finished=True), Curve(curve(0.1), finished=True)]
    assert decide(MEDIAN, "min", "val_loss", 2, hopeless, ended) is not None
    assert decide(StoppingRule("none"), "min", "val_loss", 5, hopeless, others) is None


def test_successive_halving_keeps_the_top_third_at_each_rung():
    rule = StoppingRule("asha", grace_epochs=1, min_trials=2, reduction_factor=3)
    others = [Curve(curve(0.2, 0.2, 0.2)), Curve(curve(0.3, 0.3, 0.3))]
    # Rungs at epochs 1, 3, 9: epoch 2 is never a decision point.
    assert decide(rule, "min", "val_loss", 2, curve(0.9, 0.9), others) is None
    reason = decide(rule, "min", "val_loss", 3, curve(0.9, 0.9, 0.9), others)
    assert reason and "successive halving" in reason and "top 1 of the 3" in reason
    assert decide(rule, "min", "val_loss", 3, curve(0.9, 0.9, 0.1), others) is None
    # Only trials that reached the rung count.
    assert decide(rule, "min", "val_loss", 3, curve(0.9, 0.9, 0.9), [others[0]]) is None
    assert decide(rule, "min", "val_loss", 1, curve(0.25), others) is not None


@pytest.mark.parametrize("mode", ["min", "max"])
def test_no_rule_stops_the_leading_trial(mode):
    best = 0.0 if mode == "min" else 1.0
    others = [Curve(curve(*[0.5] * 9)) for _ in range(5)]
    mine = curve(*[best] * 9)
    for rule in ("median", "asha"):
        config = StoppingRule(rule, grace_epochs=1, min_trials=1, reduction_factor=2)
        assert all(decide(config, mode, "m", epoch, mine, others) is None for epoch in range(1, 10))
