"""The predict fast path (JSON records → matrix) agrees with the general path, or steps aside."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.ml.preprocessing import FeatureEncoder
from service.ml.records import RecordEncoder
from service.ml.tabular import coerce_columns, frame_from_records, infer_columns, read_csv
from tests.support.data import MIXED_TYPES as TYPES
from tests.support.data import mixed_csv


def fitted(scaling: str = "standard") -> FeatureEncoder:
    frame, _ = infer_columns(read_csv(mixed_csv(), max_rows=10_000, max_columns=10))
    frame.loc[::7, "flag"] = None  # a boolean with missing values gets an indicator too
    encoder = FeatureEncoder.fit(frame, TYPES, scaling)
    assert {c.name for c in encoder.columns if c.indicator} == {"x2", "flag"}
    return encoder


ENCODER = fitted()
FAST = RecordEncoder(ENCODER)
QUANTILE = fitted("quantile")  # the tabular recipe's rank-Gauss scaling


def general(records: list, encoder: FeatureEncoder = ENCODER) -> np.ndarray:
    frame = frame_from_records(records, max_rows=10_000, max_columns=10)
    return encoder.transform(coerce_columns(frame, encoder.types, field="records"))


numbers = st.one_of(
    st.none(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
record = st.fixed_dictionaries(
    {},
    optional={
        "x1": numbers,
        "x2": numbers,
        "colour": st.one_of(
            st.none(), st.sampled_from(["red", "green", "blue", "mauve", "", "NA"]), st.text()
        ),
        "flag": st.one_of(st.none(), st.booleans()),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(record, min_size=1, max_size=20))
def test_fast_path_gives_the_general_paths_matrix(records):
    fast = FAST.encode(records, max_cell_chars=10_000)
    assert fast is not None
    np.testing.assert_array_equal(fast, general(records))


@settings(max_examples=100, deadline=None)
@given(st.lists(record, min_size=1, max_size=20))
def test_fast_path_gives_the_general_paths_matrix_with_quantile_scaling(records):
    assert {c.scaling for c in QUANTILE.columns if c.type == "numeric"} == {"quantile"}
    fast = RecordEncoder(QUANTILE).encode(records, max_cell_chars=10_000)
    assert fast is not None
    np.testing.assert_array_equal(fast, general(records, QUANTILE))


@pytest.mark.parametrize(
    "records",
    [
        [{"x1": True}],  # a boolean in a numeric column: the general path names the cell
        [{"x1": "1.5"}],  # numbers as text: the general path parses them
        [{"x1": math.nan}],
        [{"x1": math.inf}],
        [{"x1": 10**400}],
        [{"flag": "true"}],
        [{"flag": 1}],
        [{"colour": 3}],
        [{"colour": ["red"]}],
        [{"colour": "x" * 11}],
        [{"x1": 1.0, "unknown": 2}],
        [["not", "an", "object"]],
        [],
        {"x1": 1.0},
    ],
)
def test_anything_unusual_takes_the_general_path(records):
    assert FAST.encode(records, max_cell_chars=10) is None


def test_integer_coded_categories_take_the_general_path():
    frame, _ = infer_columns(read_csv(b"code,y\n1,a\n2,b\n3,a\n", max_rows=10, max_columns=5))
    encoder = FeatureEncoder.fit(frame, {"code": "categorical"})
    assert encoder.columns[0].numeric_codes
    assert RecordEncoder(encoder).encode([{"code": 3}], max_cell_chars=100) is None


def test_a_dropped_column_takes_the_general_path_which_checks_its_cells():
    frame, _ = infer_columns(
        read_csv(b"x,same,y\n1,k,a\n2,k,b\n3,k,a\n", max_rows=10, max_columns=5)
    )
    encoder = FeatureEncoder.fit(frame, {"x": "numeric", "same": "categorical"})
    assert encoder.types["same"] == "dropped"
    fast = RecordEncoder(encoder)
    assert fast.encode([{"x": 1.0}], max_cell_chars=100) is not None
    assert fast.encode([{"x": 1.0, "same": "k"}], max_cell_chars=100) is None
