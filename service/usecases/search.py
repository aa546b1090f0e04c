"""A sweep's search space expanded into trials: a grid's cartesian product or random draws.

Pure functions (no database): each trial is a dict of the searched hyperparameters'
values, applied on top of the sweep's base hyperparameters. :func:`expand` checks every
trial with the hyperparameter loader it is given (the API's schema of the hyperparameter
table) and names where a bad value came from.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from collections.abc import Callable
from typing import Any

from service.ml.hyperparameters import BY_NAME
from service.usecases.errors import InvalidFields

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


# Loads a trial's (or the base's) hyperparameters, defaults filled in; raises
# InvalidFields keyed by the path inside the hyperparameters (``hidden_layers[0]``).
HyperparameterLoader = Callable[[dict[str, Any]], dict[str, Any]]


def expand(
    search: dict[str, Any], base: dict[str, Any], load: HyperparameterLoader
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The sweep's base hyperparameters loaded, and its trials (each the searched values
    only), every one checked by ``load``. A random search without a seed gets one drawn
    and stored in ``search``. InvalidFields names where a bad value came from
    (``search.grid.learning_rate[1]``), before anything is stored."""
    loaded = _load(load, base, lambda path: path)
    if "grid" in search:
        trials = _grid(base, search["grid"], load)
    else:
        if search["random"]["seed"] is None:
            search["random"]["seed"] = random.randrange(2**31)
        trials = _random(base, search["random"], load)
    checked = []
    for values in trials:
        full = _load(load, {**base, **values}, lambda f, v=values: source_field(search, f, v))
        checked.append({name: full[name] for name in values})
    return loaded, checked


def _load(load: HyperparameterLoader, raw: dict, where: Callable[[str], str | None]) -> dict:
    """``raw`` loaded; errors renamed ``where(hyperparameters.<path>)``."""
    try:
        return load(raw)
    except InvalidFields as exc:
        errors = {where(f"hyperparameters.{p}") or p: m for p, m in exc.errors.items()}
        raise InvalidFields(errors) from None


def _check_names(names, prefix: str) -> None:
    for name in names:
        if name not in BY_NAME:
            raise InvalidFields({f"{prefix}.{name}": ["not a hyperparameter"]})


def _grid(base: dict, grid: dict, load: HyperparameterLoader) -> list[dict]:
    _check_names(grid, "search.grid")
    for name, values in grid.items():
        if not values:
            raise InvalidFields({f"search.grid.{name}": ["must list at least one value"]})
    if grid_size(grid) > MAX_TRIALS:
        raise InvalidFields(
            {"search.grid": [f"makes {grid_size(grid)} trials; at most {MAX_TRIALS}"]}
        )
    for name, values in grid.items():
        for i, value in enumerate(values):
            _load(load, {**base, name: value}, lambda _f, n=name, i=i: f"search.grid.{n}[{i}]")
    return grid_trials(grid)


def _random(base: dict, search: dict, load: HyperparameterLoader) -> list[dict]:
    prefix = "search.random.parameters"
    _check_names(search["parameters"], prefix)
    for name, spec in search["parameters"].items():
        try:
            spec = search["parameters"][name] = distribution(spec)
        except ValueError as exc:
            raise InvalidFields({f"{prefix}.{name}": [str(exc)]}) from None
        ((kind, args),) = spec.items()
        for i, value in enumerate(args):
            _load(
                load,
                {**base, name: value},
                lambda _f, n=name, k=kind, i=i: f"{prefix}.{n}.{k}[{i}]",
            )
    return random_trials(search["parameters"], search["n_trials"], search["seed"])


def distribution(value: Any) -> dict[str, list]:
    """A random search's distribution checked: ``{"uniform" | "log_uniform" | "int":
    [low, high]}`` or ``{"choice": [values]}``; ValueError says what is wrong."""
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(f"must be an object with one key: one of {list(DISTRIBUTIONS)}")
    ((kind, args),) = value.items()
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"{kind!r} is not a distribution; use one of {list(DISTRIBUTIONS)}")
    if kind == "choice":
        if not isinstance(args, list) or not 1 <= len(args) <= MAX_TRIALS:
            raise ValueError(f"choice must be a list of 1 to {MAX_TRIALS} values")
        return {kind: args}
    number = int if kind == "int" else (int, float)
    if (
        not isinstance(args, list)
        or len(args) != 2
        or any(isinstance(a, bool) or not isinstance(a, number) for a in args)
        or any(not _finite(a) for a in args)
    ):
        what = "integers" if kind == "int" else "finite numbers"
        raise ValueError(f"{kind} must be [low, high], two {what}")
    low, high = args
    if low > high:
        raise ValueError(f"{kind}: low must not be greater than high")
    if kind == "log_uniform" and low <= 0:
        raise ValueError("log_uniform: low must be greater than 0")
    return {kind: [low, high]}


def _finite(number: int | float) -> bool:
    """A finite float, or an int a float can hold (``math.isfinite`` raises beyond that)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False
