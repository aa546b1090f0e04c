"""The streaming statistics pass: chunked and merged equals whole, sketches within bounds."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from service.ml.preprocessing import FeatureEncoder
from service.ml.stats import TableAccumulator, table_stats

TYPES = {"x": "numeric", "colour": "categorical", "flag": "boolean", "code": "numeric"}


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, n)
    x[rng.random(n) < 0.1] = np.nan
    colour = pd.Series(rng.choice(["red", "green", "blue", "grey"], n, p=[0.4, 0.3, 0.2, 0.1]))
    colour[rng.random(n) < 0.05] = None
    flag = pd.Series(rng.random(n) < 0.3, dtype="boolean")
    flag[rng.random(n) < 0.02] = pd.NA
    return pd.DataFrame(
        {
            "x": x,
            "colour": colour.astype("str"),
            "flag": flag,
            "code": rng.integers(0, 2, n).astype("float64"),
        }
    )


def test_chunks_give_the_statistics_of_the_whole():
    frame = _frame(5000)
    whole = table_stats(frame, TYPES, chunk_rows=10_000)
    chunked = table_stats(frame, TYPES, chunk_rows=333)
    present = frame["x"].dropna()
    for stats in (whole, chunked):
        x = stats["x"]
        assert (x.count, x.missing) == (len(present), int(frame["x"].isna().sum()))
        assert x.mean == pytest.approx(present.mean(), rel=1e-12)
        assert x.variance == pytest.approx(present.var(ddof=0), rel=1e-10)
        assert (x.min, x.max) == (present.min(), present.max())
        assert x.quantile(0.5) == pytest.approx(np.median(present), rel=1e-12)  # exact: small
        assert x.quantile([0.25, 0.75]) == pytest.approx(np.quantile(present, [0.25, 0.75]))
        # More distinct values than the exact limit (1000): a KMV estimate.
        assert not x.n_unique_exact and x.n_unique == pytest.approx(present.nunique(), rel=0.05)
        assert not x.only_01
        assert stats["code"].only_01
        colour = stats["colour"]
        assert colour.counts == frame["colour"].value_counts().to_dict()
        assert colour.missing == int(frame["colour"].isna().sum())
        flag = stats["flag"]
        assert (flag.n_true, flag.n_false) == (
            int(frame["flag"].sum()),
            int((frame["flag"] == False).sum()),  # noqa: E712 - a pandas mask
        )


def test_two_accumulators_merge_into_the_one_of_the_whole():
    frame = _frame(4000)
    left, right = TableAccumulator(TYPES), TableAccumulator(TYPES)
    left.update(frame.iloc[:1500])
    right.update(frame.iloc[1500:])
    left.merge(right)
    merged, whole = left.finish(), table_stats(frame, TYPES)
    assert merged.rows == 4000
    for name in TYPES:
        a, b = merged[name], whole[name]
        assert (a.count, a.missing, a.n_unique, a.counts) == (
            b.count,
            b.missing,
            b.n_unique,
            b.counts,
        )
    assert merged["x"].mean == pytest.approx(whole["x"].mean)
    assert merged["x"].quantile(0.5) == pytest.approx(whole["x"].quantile(0.5))


def test_large_columns_use_documented_approximations():
    rng = np.random.default_rng(1)
    n = 200_000
    frame = pd.DataFrame(
        {
            "x": rng.exponential(1.0, n),
            "word": pd.Series([f"w{i}" for i in rng.integers(0, 50_000, n)], dtype="str"),
        }
    )
    stats = table_stats(
        frame,
        {"x": "numeric", "word": "categorical"},
        chunk_rows=7_000,
        quantile_capacity=20_000,
        count_limit=100,
    )
    x = stats["x"]
    assert len(x.sample) == 20_000 and not x.sample_exact
    for q in (0.1, 0.5, 0.9):
        # A quantile's rank error is about sqrt(q(1-q)/capacity) ≈ 0.35%: allow 4 sigma.
        rank = np.mean(frame["x"].to_numpy() <= x.quantile(q))
        assert abs(rank - q) < 4 * np.sqrt(q * (1 - q) / 20_000)
    word = stats["word"]
    truth = frame["word"].nunique()
    assert not word.n_unique_exact and abs(word.n_unique - truth) / truth < 0.08
    kept, other = word.categories(10)
    assert len(kept) == 10 and sum(kept.values()) + other == n
    assert not word.counts_exact and len(word.counts) == 100


def test_counts_stay_exact_up_to_the_limit():
    frame = pd.DataFrame({"c": pd.Series([f"v{i % 50}" for i in range(1000)], dtype="str")})
    stats = table_stats(frame, {"c": "categorical"}, chunk_rows=64, count_limit=50)
    assert stats["c"].n_unique_exact and stats["c"].n_unique == 50
    assert set(stats["c"].counts.values()) == {20}


def test_the_encoder_fitted_from_statistics_equals_the_in_memory_fit():
    frame = _frame(3000)
    stats = table_stats(frame, TYPES, chunk_rows=256)
    from_stats = FeatureEncoder.fit_stats(stats, TYPES)
    in_memory = FeatureEncoder.fit(frame, TYPES)
    for a, b in zip(from_stats.columns, in_memory.columns, strict=True):
        assert (a.type, a.categories, a.indicator, a.fill) == (
            b.type,
            b.categories,
            b.indicator,
            b.fill,
        )
        assert (a.median, a.mean, a.std) == pytest.approx((b.median, b.mean, b.std))
    x = from_stats.columns[0]
    filled = frame["x"].fillna(frame["x"].median())
    assert (x.mean, x.std) == pytest.approx((filled.mean(), filled.std(ddof=0)))
    assert from_stats.columns[1].categories == ("blue", "green", "grey", "red")


def test_max_categories_keeps_the_most_frequent():
    frame = _frame(3000)
    stats = table_stats(frame, TYPES)
    encoder = FeatureEncoder.fit_stats(stats, TYPES, max_categories=2)
    assert encoder.columns[1].categories == ("green", "red")


@pytest.mark.parametrize("count_limit", [1000, 30])
def test_arrow_chunks_give_the_statistics_of_the_pandas_chunks(count_limit):
    """Uploads summarise Arrow columns (``update_arrow``); the worker, pandas frames:
    both give the same statistics, hashes, counts and their order included."""
    rng = np.random.default_rng(2)
    frame = _frame(6000)
    frame["x"] = frame["x"].where(rng.random(6000) > 0.02, np.nan)  # NaN as well as nulls
    frame["word"] = pd.Series([f"w{i}" for i in rng.integers(0, 400, 6000)], dtype="str")
    types = TYPES | {"word": "categorical"}
    table = pa.Table.from_pandas(frame, preserve_index=False).cast(
        pa.schema(
            [("x", pa.float64()), ("colour", pa.string()), ("flag", pa.bool_())]
            + [("code", pa.float64()), ("word", pa.string())]
        )
    )
    by_frame = TableAccumulator(types, count_limit=count_limit, quantile_capacity=500)
    by_arrow = TableAccumulator(types, count_limit=count_limit, quantile_capacity=500)
    for start in range(0, 6000, 1100):
        by_frame.update(frame.iloc[start : start + 1100])
        by_arrow.update_arrow(table.slice(start, 1100))
    a, b = by_frame.finish(), by_arrow.finish()
    assert a.rows == b.rows == 6000
    for name in types:
        left, right = vars(a[name]).copy(), vars(b[name]).copy()
        assert np.array_equal(left.pop("sample"), right.pop("sample")) or name != "x"
        assert left == right, name
        assert list((a[name].counts or {}).items()) == list((b[name].counts or {}).items())


def test_hash_floats_is_pandas_hash_array():
    """The distinct sketch's hash of numbers: pandas' own values (so sketches made by
    either agree), -0.0 as 0.0 and every NaN alike, over more than one step."""
    from service.ml.stats import _HASH_STEP, hash_floats

    rng = np.random.default_rng(3)
    x = rng.normal(size=2 * _HASH_STEP + 17).round(3)
    x[:6] = [0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf]
    x[7] = np.frombuffer(np.uint64(0x7FF8000000000001).tobytes(), np.float64)[0]  # a NaN payload
    np.testing.assert_array_equal(hash_floats(x), pd.util.hash_array(x))
    assert hash_floats(x)[0] == hash_floats(x)[1] and hash_floats(x)[2] == hash_floats(x)[7]
    assert len(hash_floats(np.empty(0))) == 0
