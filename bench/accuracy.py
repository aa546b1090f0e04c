"""Default hyperparameters vs scikit-learn on public and home-made tabular datasets.

For each dataset and each of SPLITS stratified train/test splits (25% test), trainserve's
ML core trains with the default hyperparameters on the training part (holding out its
own validation split, as the service does) and scikit-learn's LogisticRegression and
MLPClassifier (median imputation + standardisation, one-hot for categoricals) train on
the same training part. Prints held-out test accuracy, mean over the splits, and the gap
between trainserve and the better of the two.

Usage: python bench/accuracy.py [NAME=JSON ...] [DATASET ...]
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn import datasets as skdatasets
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.api.jobs.schemas import HyperparametersSchema  # noqa: E402
from service.ml.inference import ModelBundle  # noqa: E402
from service.ml.pipeline import prepare  # noqa: E402
from service.ml.preprocessing import LabelEncoder, stratified_split  # noqa: E402
from service.ml.tabular import infer_columns, read_csv  # noqa: E402
from service.ml.training import TrainingConfig  # noqa: E402
from tests.data import mixed_table  # noqa: E402

SPLITS = 5
TOLERANCE = 1.5  # points of accuracy


def sklearn_table(loader) -> pd.DataFrame:
    bunch = loader(as_frame=True)
    frame = bunch.frame.rename(columns={bunch.target.name: "target"})
    frame["target"] = frame["target"].map(dict(enumerate(bunch.target_names)))
    frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
    return frame


def loans(n: int = 1500, seed: int = 11) -> pd.DataFrame:
    """Home-made: numeric, categorical and boolean features, missing values, imbalance."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.5, 0.5, n)
    debt = rng.uniform(0, 1, n) * income
    region = rng.choice(
        ["north", "south", "east", "west", "islands"], n, p=[0.3, 0.3, 0.2, 0.15, 0.05]
    )
    owner = rng.random(n) < 0.4
    years = rng.integers(0, 30, n).astype(float)
    score = (np.log(income) - 10.5) * 2 - 3 * debt / income + owner * 0.8 + years / 15
    score += np.select([region == "islands", region == "north"], [-1.0, 0.4], 0.0)
    score += rng.normal(0, 0.5, n)
    status = np.select([score < -0.8, score < 0.9], ["default", "late"], "paid")
    frame = pd.DataFrame(
        {
            "income": income.round(0),
            "debt": debt.round(0),
            "region": region,
            "owner": owner,
            "years": years,
            "status": status,
        }
    )
    frame.loc[rng.random(n) < 0.1, "income"] = np.nan
    frame.loc[rng.random(n) < 0.08, "region"] = None
    frame.loc[rng.random(n) < 0.05, "years"] = np.nan
    return frame.rename(columns={"status": "target"})


def flowers() -> pd.DataFrame:
    return mixed_table(800, seed=3).rename(columns={"species": "target"})


DATASETS = {
    "iris": lambda: sklearn_table(skdatasets.load_iris),
    "wine": lambda: sklearn_table(skdatasets.load_wine),
    "breast_cancer": lambda: sklearn_table(skdatasets.load_breast_cancer),
    "digits": lambda: sklearn_table(skdatasets.load_digits),
    "loans (missing, categorical)": loans,
    "flowers (missing, categorical)": flowers,
}


def as_stored(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as the service stores it after an upload (via CSV, like a user's file)."""
    csv = frame.astype(object).to_csv(index=False, na_rep="").encode()
    stored, _ = infer_columns(read_csv(csv, max_rows=10**7, max_columns=10**4))
    return stored


OVERRIDES: dict = {}


def trainserve_accuracy(train: pd.DataFrame, test: pd.DataFrame, types: dict, seed: int):
    hyperparameters = HyperparametersSchema().load(OVERRIDES)
    config = TrainingConfig.from_json({**hyperparameters, "seed": seed})
    data = prepare(
        train, "target", types, validation_fraction=config.validation_fraction, seed=seed
    )
    trainer = data.trainer(config)
    for _ in trainer.fit():
        pass
    _, state = trainer.final_state()
    bundle = ModelBundle.from_state(trainer.arch, data.encoder, data.labels.classes, state)
    cells = test[list(types)].astype(object).where(test[list(types)].notna(), None)
    proba = bundle.predict_proba(pd.DataFrame(cells.astype(str).where(cells.notna(), None)))
    predicted = np.array(bundle.labels(proba), dtype=object)
    truth = np.array([LabelEncoder((v,)).classes[0] for v in test["target"]], dtype=object)
    return float((predicted == truth).mean())


def sklearn_accuracies(train: pd.DataFrame, test: pd.DataFrame, types: dict, seed: int):
    numeric = [c for c, t in types.items() if t != "categorical"]
    categorical = [c for c, t in types.items() if t == "categorical"]
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
                ),
                categorical,
            ),
        ]
    )

    def prepared(frame):
        out = frame[list(types)].copy()
        for c in numeric:
            out[c] = out[c].astype("float64")
        for c in categorical:
            out[c] = out[c].astype(object).where(out[c].notna(), np.nan)
        return out

    results = {}
    for name, model in (
        ("logistic", LogisticRegression(max_iter=5000)),
        ("sklearn_mlp", MLPClassifier(max_iter=1000, random_state=seed)),
    ):
        pipeline = make_pipeline(pre, model)
        pipeline.fit(prepared(train), train["target"].astype(str))
        results[name] = float(
            (pipeline.predict(prepared(test)) == test["target"].astype(str)).mean()
        )
    return results


def main(argv: list[str]) -> int:
    """Arguments: hyperparameter overrides as NAME=JSON (to compare against the defaults)
    and dataset names to restrict the run to."""
    import json

    only = [a for a in argv if "=" not in a]
    for arg in argv:
        if "=" in arg:
            key, value = arg.split("=", 1)
            OVERRIDES[key] = json.loads(value)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    torch.set_num_threads(1)
    rows = []
    for name, load in DATASETS.items():
        if only and not any(name.startswith(o) for o in only):
            continue
        stored = as_stored(load())
        stored = stored[stored["target"].notna()].reset_index(drop=True)
        types = {
            c: (
                "numeric"
                if str(stored[c].dtype) == "float64"
                else "boolean"
                if str(stored[c].dtype) == "boolean"
                else "categorical"
            )
            for c in stored.columns
            if c != "target"
        }
        codes = LabelEncoder.fit(stored["target"]).encode(stored["target"])
        scores = {"trainserve": [], "logistic": [], "sklearn_mlp": []}
        started = time.perf_counter()
        for seed in range(SPLITS):
            train_rows, test_rows = stratified_split(codes, 0.25, seed=100 + seed)
            train, test = stored.iloc[train_rows], stored.iloc[test_rows]
            scores["trainserve"].append(trainserve_accuracy(train, test, types, seed))
            for k, v in sklearn_accuracies(train, test, types, seed).items():
                scores[k].append(v)
        means = {k: 100 * float(np.mean(v)) for k, v in scores.items()}
        best = max(means["logistic"], means["sklearn_mlp"])
        rows.append(
            (name, len(stored), means, means["trainserve"] - best, time.perf_counter() - started)
        )
    print(
        f"held-out accuracy (%), mean of {SPLITS} stratified 75/25 splits; "
        f"gap = trainserve - best of scikit-learn; hyperparameters: defaults {OVERRIDES}"
    )
    print(
        f"{'dataset':32} {'rows':>6} {'trainserve':>10} {'logistic':>9} {'sk MLP':>7} "
        f"{'gap':>6} {'ok':>3}"
    )
    ok = True
    for name, n, means, gap, _ in rows:
        within = gap >= -TOLERANCE
        ok &= within
        print(
            f"{name:32} {n:6d} {means['trainserve']:10.2f} {means['logistic']:9.2f} "
            f"{means['sklearn_mlp']:7.2f} {gap:+6.2f} {'yes' if within else 'NO':>3}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
