"""Recipes: named sets of defaults for the knobs whose best value depends on the network.

A job's ``recipe`` picks one; every recipe-dependent hyperparameter left ``null`` takes
the recipe's value, and one given explicitly wins. ``tabular`` is the default, chosen by
measurement on the accuracy suite (``bench/accuracy.py``, ``bench/README.md``);
``plain`` is the recipe of every model trained before it: a small MLP, Adam, batch 32,
early stopping, for raw speed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    "plain": {
        "network": "mlp",
        "hidden_layers": (64, 64),
        "activation": "relu",
        "dropout": 0.0,
        "learning_rate": 1e-3,
        "batch_size": 32,
        "epochs": 100,
        "early_stopping": True,
        "lr_scheduler": "none",
        "adam_beta2": 0.999,
        "label_smoothing": 0.0,
        "scaling": "standard",
        "embedding": "none",
        "scale_layer": False,
        "ensemble_size": 1,
        "folds": 0,
        "temperature_scaling": False,
        "dropout_schedule": "constant",
        "best_epoch_metric": "loss",
    },
    "tabular": {
        "network": "tabular",
        "hidden_layers": (256, 256, 256),
        "activation": "selu",
        "dropout": 0.15,
        "learning_rate": 0.04,
        "batch_size": "auto",
        "epochs": 64,
        "early_stopping": False,
        "lr_scheduler": "coslog4",
        "adam_beta2": 0.95,
        "label_smoothing": 0.1,
        "scaling": "robust",
        "embedding": "periodic",
        "scale_layer": True,
        "ensemble_size": 1,
        "folds": 0,
        "temperature_scaling": True,
        "dropout_schedule": "flat_cosine",
        "best_epoch_metric": "accuracy",
    },
}
RECIPE_NAMES = tuple(RECIPES)
DEFAULT_RECIPE = "tabular"
#: Knobs whose ``null`` means "the recipe's value".
RECIPE_KNOBS = tuple(RECIPES["plain"])


def resolve(config):
    """``config`` with every recipe-dependent knob still ``None`` filled in from its recipe."""
    recipe = RECIPES[config.recipe]
    changes = {name: value for name, value in recipe.items() if getattr(config, name) is None}
    return dataclasses.replace(config, **changes) if changes else config
