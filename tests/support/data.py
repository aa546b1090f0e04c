"""Small tables made on the spot: no downloads."""

from __future__ import annotations

import numpy as np
import pandas as pd


def mixed_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Numeric, categorical and boolean features with missing values; a 3-class target
    that depends on all of them, learnable to well above 90% accuracy."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    flag = rng.random(n) < 0.5
    score = x1 + 0.5 * x2 + np.where(colour == "red", 1.5, 0.0) + np.where(flag, 0.5, 0.0)
    species = np.select([score < -0.3, score < 1.2], ["setosa", "versicolor"], "virginica")
    frame = pd.DataFrame(
        {"x1": x1.round(4), "x2": x2.round(4), "colour": colour, "flag": flag, "species": species}
    )
    frame.loc[::9, "x2"] = np.nan
    frame.loc[::13, "colour"] = None
    return frame


def mixed_csv(n: int = 300, seed: int = 0) -> bytes:
    """:func:`mixed_table` as CSV bytes (missing cells empty or NA)."""
    frame = mixed_table(n, seed).astype(object)
    frame["flag"] = frame["flag"].map({True: "true", False: "false"})
    return frame.to_csv(index=False, na_rep="NA").encode()


#: The feature types :func:`mixed_table`'s columns are inferred as.
MIXED_TYPES = {"x1": "numeric", "x2": "numeric", "colour": "categorical", "flag": "boolean"}
