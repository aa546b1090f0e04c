"""A sweep's search space expanded into trials: a grid's cartesian product or random draws.

Pure functions (no database): each trial is a dict of the searched hyperparameters'
values, applied on top of the sweep's base hyperparameters.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from typing import Any

DISTRIBUTIONS = ("uniform", "log_uniform", "int", "choice")
# Trials of one sweep, at most.
MAX_TRIALS = 1000


def grid_size(grid: dict[str, list]) -> int:
    """How many trials the grid makes (before expanding it)."""
    return math.prod(len(values) for values in grid.values())


def grid_trials(grid: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination of the listed values, the first parameter varying slowest."""
    names = list(grid)
    return [
        {name: copy.deepcopy(value) for name, value in zip(names, values, strict=True)}
        for values in itertools.product(*(grid[name] for name in names))
    ]


def random_trials(
    parameters: dict[str, dict[str, Any]], n_trials: int, seed: int
) -> list[dict[str, Any]]:
    """``n_trials`` independent draws; the same seed always gives the same trials.

    Each parameter is ``{"uniform": [low, high]}``, ``{"log_uniform": [low, high]}``
    (uniform in log space: learning rates), ``{"int": [low, high]}`` (both ends included)
    or ``{"choice": [value, ...]}``.
    """
    rng = random.Random(seed)
    return [{name: sample(spec, rng) for name, spec in parameters.items()} for _ in range(n_trials)]


def sample(spec: dict[str, Any], rng: random.Random) -> Any:
    """One value of a distribution (see :func:`random_trials`)."""
    ((kind, args),) = spec.items()
    if kind == "uniform":
        return rng.uniform(args[0], args[1])
    if kind == "log_uniform":
        return math.exp(rng.uniform(math.log(args[0]), math.log(args[1])))
    if kind == "int":
        return rng.randint(args[0], args[1])
    if kind == "choice":
        return copy.deepcopy(rng.choice(args))
    raise ValueError(f"unknown distribution {kind!r}")


def source_field(search: dict[str, Any], field: str | None, values: dict[str, Any]) -> str | None:
    """Where the hyperparameter named by ``field`` (``hyperparameters.<name>...``) of a
    trial with searched ``values`` came from: ``search.grid.<name>[i]``,
    ``search.random.parameters.<name>``, or ``field`` itself (the base hyperparameters)."""
    if not field or not field.startswith("hyperparameters."):
        return field
    name = field.split(".")[1].split("[")[0]
    if name not in values:
        return field
    if "grid" in search:
        return f"search.grid.{name}[{search['grid'][name].index(values[name])}]"
    return f"search.random.parameters.{name}"
