"""The fitted encoder and the stratified split."""

import json

import numpy as np
import pandas as pd

from service.ml.preprocessing import FeatureEncoder, LabelEncoder, stratified_split
from service.ml.tabular import infer_columns, read_csv
from tests.support.data import MIXED_TYPES as TYPES
from tests.support.data import mixed_csv


def table():
    frame, _ = infer_columns(read_csv(mixed_csv(), max_rows=10_000, max_columns=10))
    return frame


def test_encoder_survives_a_json_round_trip_exactly():
    frame = table()
    encoder = FeatureEncoder.fit(frame, TYPES)
    again = FeatureEncoder.from_json(json.loads(json.dumps(encoder.to_json())))
    assert again == encoder
    np.testing.assert_array_equal(again.transform(frame), encoder.transform(frame))


def test_shapes_standardisation_and_one_hot():
    frame = table()
    encoder = FeatureEncoder.fit(frame, TYPES)
    x = encoder.transform(frame)
    # x1, x2 + its missing indicator, colour (3 categories + missing/unseen slot), flag
    assert x.shape == (len(frame), 1 + 2 + 4 + 1) == (len(frame), encoder.n_inputs)
    assert x.dtype == np.float32
    assert abs(x[:, 0].mean()) < 1e-5 and abs(x[:, 0].std() - 1) < 1e-3
    assert not np.isnan(x).any()
    one_hot = x[:, 3:7]
    assert (one_hot.sum(axis=1) == 1).all()
    assert (x[:, 2] == frame["x2"].isna().to_numpy()).all()  # the missing indicator


def test_missing_and_unseen_categories_share_the_last_slot():
    frame = table()
    encoder = FeatureEncoder.fit(frame, TYPES)
    new = pd.DataFrame(
        {
            "x1": [np.nan, 0.0],
            "x2": [0.0, np.nan],
            "colour": pd.Series(["purple", None], dtype="str"),
            "flag": pd.Series([None, True], dtype="boolean"),
        }
    )
    x = encoder.transform(new)
    assert x[0, 3:7].tolist() == [0, 0, 0, 1] and x[1, 3:7].tolist() == [0, 0, 0, 1]
    assert x[:, 2].tolist() == [0, 1]  # x2 missing in the second row
    median = encoder.columns[0].median
    expected = (median - encoder.columns[0].mean) / encoder.columns[0].std
    assert x[0, 0] == np.float32(expected)


def test_text_held_by_arrow_gets_the_codes_python_strings_get():
    """Category codes are looked up in Arrow for Arrow-backed text (stored tables) and by
    pandas otherwise: the same codes, missing and unseen values in the last slot."""
    encoder = FeatureEncoder.fit(
        pd.DataFrame({"c": pd.Series(["a", "b", "nan", " c", "a"], dtype="str")}),
        {"c": "categorical"},
    )
    values = ["a", None, "b", "zz", "nan", " c", "c", "A", np.nan, "b"] * 3
    arrow = pd.DataFrame({"c": pd.Series(values, dtype="str")})[7:]  # a slice: an offset
    python = pd.DataFrame({"c": pd.Series(values, dtype=object)})[7:]
    assert isinstance(arrow["c"].array, pd.arrays.ArrowStringArray)
    codes = encoder.transform(arrow).argmax(axis=1)
    np.testing.assert_array_equal(codes, encoder.transform(python).argmax(axis=1))
    slot = {"a": 1, "b": 2, "nan": 3, " c": 0}  # categories sorted: " c", "a", "b", "nan"
    assert codes.tolist() == [slot.get(v, 4) if isinstance(v, str) else 4 for v in values][7:]


def test_stratified_split_keeps_each_class_share_and_is_seeded():
    codes = np.array([0] * 80 + [1] * 20)
    train, val = stratified_split(codes, 0.25, seed=3)
    assert len(set(train) & set(val)) == 0 and len(train) + len(val) == 100
    assert (codes[val] == 0).sum() == 20 and (codes[val] == 1).sum() == 5
    again = stratified_split(codes, 0.25, seed=3)
    assert (again[0] == train).all() and (again[1] == val).all()


def test_label_encoder_keeps_json_label_types():
    labels = LabelEncoder.fit(pd.Series([2.0, 1.0, 2.0, None]))
    assert labels.classes == (1, 2)
    assert labels.encode(pd.Series([2.0, 1.0])).tolist() == [1, 0]


def test_constant_and_all_missing_columns_are_dropped_with_a_note():
    frame = pd.DataFrame(
        {
            "same": [1.0] * 6,
            "empty": pd.Series([None] * 6, dtype="str"),
            "same_but_missing": pd.Series(["a", "a", None, "a", "a", "a"], dtype="str"),
            "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    types = {
        "same": "numeric",
        "empty": "categorical",
        "same_but_missing": "categorical",
        "x": "numeric",
    }
    encoder = FeatureEncoder.fit(frame, types)
    assert encoder.types == {
        "same": "dropped",
        "empty": "dropped",
        "same_but_missing": "categorical",
        "x": "numeric",
    }
    assert encoder.n_inputs == 2 + 1  # a/unseen-or-missing slots, then x
    assert any("'same' dropped" in n for n in encoder.notes)
    assert any("'empty' dropped" in n for n in encoder.notes)
    assert encoder.transform(frame).shape == (6, 3)


def test_zero_one_columns_stay_zero_one():
    frame = pd.DataFrame({"flag01": [0.0, 1.0, 1.0, 0.0, np.nan]})
    encoder = FeatureEncoder.fit(frame, {"flag01": "numeric"})
    x = encoder.transform(frame)
    assert x[:4, 0].tolist() == [0, 1, 1, 0] and x[:, 1].tolist() == [0, 0, 0, 0, 1]


def test_integer_coded_categoricals_match_numbers_in_any_form():
    stored = pd.DataFrame({"grade": [1.0, 2.0, 3.0, 2.0, np.nan]})
    encoder = FeatureEncoder.fit(stored, {"grade": "categorical"})
    assert encoder.columns[0].categories == ("1", "2", "3")
    at_predict = pd.DataFrame({"grade": pd.Series(["2", "2.0", "7", None], dtype="str")})
    x = encoder.transform(at_predict)
    assert x.tolist() == [[0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]]


def test_id_like_columns_are_flagged():
    frame = pd.DataFrame({"id": pd.Series([f"u{i}" for i in range(30)], dtype="str")})
    encoder = FeatureEncoder.fit(frame, {"id": "categorical"})
    assert any("looks like an ID" in n for n in encoder.notes)


def test_boolean_missing_values_take_the_most_frequent_value():
    frame = pd.DataFrame({"b": pd.Series([True, True, False, None], dtype="boolean")})
    encoder = FeatureEncoder.fit(frame, {"b": "boolean"})
    x = encoder.transform(frame)
    assert x[:, 0].tolist() == [1, 1, 0, 1] and x[:, 1].tolist() == [0, 0, 0, 1]
