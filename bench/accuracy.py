"""The accuracy suite: trainserve's defaults against gradient-boosted trees and scikit-learn.

For every table of ``bench/tables.py`` and every stratified 75/25 holdout (seeds fixed:
three holdouts for tables under 2,000 rows, one for larger ones), each model trains on
the 75 % and is scored on the 25 %:

- ``default``: trainserve's ML core with the default hyperparameters, run as the service
  runs a job (its own stratified validation split out of the training part, the model
  bundle's predict on the test rows' text cells);
- ``plain``: trainserve with today's plain recipe (the defaults before issue 13), the
  reference of the training-time budget;
- ``lightgbm``: ``LGBMClassifier()`` with its defaults, categoricals as pandas categories;
- ``hgb``: scikit-learn's ``HistGradientBoostingClassifier()``, categoricals from dtype;
- ``logistic`` and ``sklearn_mlp``: ``LogisticRegression(max_iter=5000)`` and
  ``MLPClassifier()`` after median imputation + standardisation and one-hot categoricals;
- any ``NAME={"hyperparameter": value, ...}`` given on the command line: trainserve with
  those hyperparameters over the defaults (to compare recipes).

Every model runs on one thread. It prints held-out accuracy, log-loss, expected
calibration error (15 equal-width bins of the top probability) and training seconds per
table, and their means (``gap``: the first model minus the best baseline; ``vs logistic``:
minus logistic regression, on tables under 2,000 rows). Each (table, model, holdout)
result is cached as JSON under ``bench/.cache/accuracy/`` keyed by the model's full
configuration, so an interrupted run resumes and a new recipe only trains itself;
``--fresh`` ignores the cache.

Usage::

    python bench/accuracy.py [--tables iris,wine] [--models default,lightgbm]
                             [--splits N] [--markdown] [--fresh] [NAME=JSON ...]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.tables import TABLES  # noqa: E402
from service.api.jobs.schemas import HyperparametersSchema  # noqa: E402
from service.ml.pipeline import prepare, train_bundle  # noqa: E402
from service.ml.preprocessing import LabelEncoder, label_key, stratified_split  # noqa: E402
from service.ml.tabular import infer_columns, read_csv  # noqa: E402
from service.ml.training import TrainingConfig  # noqa: E402

CACHE = ROOT / "bench" / ".cache" / "accuracy"
BASELINES = ("lightgbm", "hgb", "logistic", "sklearn_mlp")
# Today's plain recipe, spelled out (the defaults before issue 13).
PLAIN = {"recipe": "plain"}
TRAINSERVE = {"default": {}, "plain": PLAIN}
ECE_BINS = 15
# Issue 13's small tables: under this many rows, within 1 point of logistic regression.
SMALL_TABLE_ROWS = 2000


def splits_for(n_rows: int) -> int:
    """Holdouts per table: small tables vary more from split to split."""
    return 3 if n_rows < 2000 else 1


def as_stored(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as the service stores it after an upload (via CSV, like a user's file)."""
    csv = frame.astype(object).to_csv(index=False, na_rep="").encode()
    stored, _ = infer_columns(read_csv(csv, max_rows=10**7, max_columns=10**4))
    return stored[stored["target"].notna()].reset_index(drop=True)


def feature_types(stored: pd.DataFrame) -> dict[str, str]:
    kinds = {"float64": "numeric", "boolean": "boolean"}
    return {c: kinds.get(str(stored[c].dtype), "categorical") for c in stored if c != "target"}


def truth_labels(target: pd.Series) -> np.ndarray:
    """Class labels as text, normalised as the service normalises them."""
    labels = LabelEncoder.fit(target)
    names = np.array([label_key(c) for c in labels.classes], dtype=object)
    return names[labels.encode(target)]


# -- models -----------------------------------------------------------------------------


def run_trainserve(overrides: dict, train, test, types, seed):
    hyperparameters = HyperparametersSchema().load({**overrides, "seed": seed})
    config = TrainingConfig.from_json(hyperparameters)
    started = time.perf_counter()
    data = prepare(
        train,
        "target",
        types,
        validation_fraction=config.validation_fraction,
        seed=seed,
        scaling=config.scaling,
        folds=config.folds if config.network == "tabular" else 0,
    )
    bundle, _ = train_bundle(data, config)
    seconds = time.perf_counter() - started
    cells = test[list(types)].astype(object).where(test[list(types)].notna(), None)
    proba = bundle.predict_proba(pd.DataFrame(cells.astype(str).where(cells.notna(), None)))
    return [label_key(c) for c in bundle.classes], proba, seconds


def _numeric_frame(frame, types):
    out = frame[list(types)].copy()
    for c, kind in types.items():
        if kind == "categorical":
            out[c] = out[c].astype(object).where(out[c].notna(), np.nan)
        else:
            out[c] = out[c].astype("float64")
    return out


def _category_frame(frame, types, categories):
    out = frame[list(types)].copy()
    for c, kind in types.items():
        if kind == "categorical":
            out[c] = pd.Categorical(
                out[c].astype(object).where(out[c].notna(), None), categories=categories[c]
            )
        else:
            out[c] = out[c].astype("float64")
    return out


def run_sklearn(name: str, train, test, types, seed):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    y = truth_labels(train["target"])
    started = time.perf_counter()
    if name in ("lightgbm", "hgb"):
        categories = {
            c: sorted(str(v) for v in train[c].dropna().unique())
            for c, kind in types.items()
            if kind == "categorical"
        }
        x_train = _category_frame(train.assign(**_as_text(train, categories)), types, categories)
        x_test = _category_frame(test.assign(**_as_text(test, categories)), types, categories)
        for c in categories:
            if name == "hgb" and len(categories[c]) > 255:  # beyond HGB's limit: codes
                x_train[c] = x_train[c].cat.codes.replace(-1, np.nan).astype("float64")
                x_test[c] = x_test[c].cat.codes.replace(-1, np.nan).astype("float64")
        if name == "lightgbm":
            from lightgbm import LGBMClassifier

            model = LGBMClassifier(random_state=seed, n_jobs=1, verbose=-1)
        else:
            model = HistGradientBoostingClassifier(random_state=seed)
    else:
        numeric = [c for c, t in types.items() if t != "categorical"]
        categorical = [c for c, t in types.items() if t == "categorical"]
        pre = ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
                (
                    "cat",
                    make_pipeline(
                        SimpleImputer(strategy="most_frequent"),
                        OneHotEncoder(handle_unknown="ignore"),
                    ),
                    categorical,
                ),
            ]
        )
        estimator = (
            LogisticRegression(max_iter=5000)
            if name == "logistic"
            else MLPClassifier(random_state=seed)
        )
        model = make_pipeline(pre, estimator)
        x_train, x_test = _numeric_frame(train, types), _numeric_frame(test, types)
    model.fit(x_train, y)
    seconds = time.perf_counter() - started
    return [str(c) for c in model.classes_], model.predict_proba(x_test), seconds


def _as_text(frame, categories):
    return {
        c: frame[c].astype(object).map(lambda v: None if pd.isna(v) else str(v)) for c in categories
    }


def run_model(name, spec, train, test, types, seed):
    if name in BASELINES:
        return run_sklearn(name, train, test, types, seed)
    return run_trainserve(spec, train, test, types, seed)


# -- metrics ----------------------------------------------------------------------------


def scores(classes: list[str], proba: np.ndarray, truth: np.ndarray) -> dict:
    """Accuracy, log-loss and top-label ECE of probabilities against true labels."""
    index = {c: i for i, c in enumerate(classes)}
    proba = np.asarray(proba, dtype=np.float64)
    codes = np.array([index.get(t, -1) for t in truth])
    p_true = np.where(codes >= 0, proba[np.arange(len(truth)), np.maximum(codes, 0)], 0.0)
    predicted = proba.argmax(axis=1)
    correct = predicted == codes
    confidence = proba.max(axis=1)
    return {
        "accuracy": float(correct.mean()),
        "log_loss": float(-np.log(np.clip(p_true, 1e-15, 1.0)).mean()),
        "ece": expected_calibration_error(confidence, correct),
    }


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray) -> float:
    bins = np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)
    total = 0.0
    for b in range(ECE_BINS):
        inside = bins == b
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total / len(confidence))


# -- the run ----------------------------------------------------------------------------


def model_key(name: str, spec: dict | None) -> str:
    if name in BASELINES:
        import sklearn

        text = f"{name}:sklearn={sklearn.__version__}"
        if name == "lightgbm":
            import lightgbm

            text += f":lightgbm={lightgbm.__version__}"
    else:
        config = TrainingConfig.from_json(HyperparametersSchema().load({**spec, "seed": 0}))
        text = json.dumps(config.to_json(), sort_keys=True)
    return f"{name}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def evaluate_table(table_name: str, models: dict, n_splits: int | None, fresh: bool) -> dict:
    stored = as_stored(TABLES[table_name].load())
    types = feature_types(stored)
    codes = LabelEncoder.fit(stored["target"]).encode(stored["target"])
    truth = truth_labels(stored["target"])
    splits = n_splits or splits_for(len(stored))
    results: dict[str, list[dict]] = {}
    for name, spec in models.items():
        folder = CACHE / table_name / model_key(name, spec)
        results[name] = []
        for split in range(splits):
            path = folder / f"split{split}.json"
            if path.exists() and not fresh:
                results[name].append(json.loads(path.read_text()))
                continue
            train_rows, test_rows = stratified_split(codes, 0.25, seed=100 + split)
            train, test = stored.iloc[train_rows], stored.iloc[test_rows]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                classes, proba, seconds = run_model(name, spec, train, test, types, split)
            result = {**scores(classes, proba, truth[test_rows]), "train_s": seconds}
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result))
            results[name].append(result)
            print(
                f"  {table_name:14} {name:14} split {split}: acc {result['accuracy']:.4f} "
                f"logloss {result['log_loss']:.4f} {seconds:7.1f}s",
                file=sys.stderr,
                flush=True,
            )
    info = {"rows": len(stored), "classes": int(codes.max()) + 1, "features": len(types)}
    means = {
        name: {
            metric: float(np.mean([r[metric] for r in runs]))
            for metric in ("accuracy", "log_loss", "ece")
        }
        | {"train_s": float(np.sum([r["train_s"] for r in runs]))}
        for name, runs in results.items()
    }
    return {"info": info, "splits": splits, "means": means}


def report(rows: dict, models: list[str], markdown: bool) -> str:
    lines = []
    metrics = (
        ("accuracy", "held-out accuracy (%)", lambda v: f"{100 * v:.2f}"),
        ("log_loss", "log-loss", lambda v: f"{v:.4f}"),
        ("ece", "expected calibration error (%)", lambda v: f"{100 * v:.2f}"),
        ("train_s", "training seconds (all holdouts)", lambda v: f"{v:.1f}"),
    )
    for metric, title, fmt in metrics:
        lines.append(f"\n{title}")
        header = ["table", "rows", "cls", "k", *models]
        if metric == "accuracy":
            header += ["gap", "vs logistic"]
        body = []
        for table, row in rows.items():
            cells = [
                table,
                str(row["info"]["rows"]),
                str(row["info"]["classes"]),
                str(row["splits"]),
            ]
            cells += [fmt(row["means"][m][metric]) for m in models]
            if metric == "accuracy":
                best = (
                    max(row["means"][m]["accuracy"] for m in models if m in BASELINES)
                    if any(m in BASELINES for m in models)
                    else float("nan")
                )
                cells.append(f"{100 * (row['means'][models[0]]['accuracy'] - best):+.2f}")
                # The small-table target: within 1 point of logistic regression.
                small = row["info"]["rows"] < SMALL_TABLE_ROWS and "logistic" in models
                logistic = row["means"]["logistic"]["accuracy"] if small else None
                cells.append(
                    f"{100 * (row['means'][models[0]]['accuracy'] - logistic):+.2f}"
                    if small
                    else ""
                )
            body.append(cells)
        summary = "sum" if metric == "train_s" else "mean"
        reduce = np.sum if metric == "train_s" else np.mean
        cells = [summary, "", "", ""]
        cells += [fmt(reduce([row["means"][m][metric] for row in rows.values()])) for m in models]
        if metric == "accuracy":
            cells += ["", ""]
        body.append(cells)
        lines += _format(header, body, markdown)
    if "default" in models and "plain" in models:
        total = {m: sum(r["means"][m]["train_s"] for r in rows.values()) for m in models}
        lines.append(
            f"\ntraining time of the defaults / today's plain recipe: "
            f"{total['default'] / total['plain']:.2f}x"
        )
    return "\n".join(lines)


def _format(header, body, markdown):
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(cells) + " |" for cells in body]
        return out
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *body]
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", default="", help="comma-separated table names")
    parser.add_argument("--models", default="", help="comma-separated model names")
    parser.add_argument("--splits", type=int, default=None, help="holdouts per table")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="ignore cached results")
    parser.add_argument("configs", nargs="*", help='NAME={"hyperparameter": value, ...}')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    models: dict[str, dict | None] = {**TRAINSERVE, **dict.fromkeys(BASELINES)}
    for arg in args.configs:
        name, _, spec = arg.partition("=")
        models[name] = json.loads(spec)
    if args.models:
        models = {m: models[m] for m in args.models.split(",")}
    tables = args.tables.split(",") if args.tables else list(TABLES)
    rows = {}
    for table in tables:
        rows[table] = evaluate_table(table, models, args.splits, args.fresh)
    print(report(rows, list(models), args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
