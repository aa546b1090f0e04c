"""Batch predict's pure half: Arrow batches typed by the model, encoded, and formatted."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from service.ml import DataError
from service.ml.batch import CsvRows, encode, header_line, prediction_lines, predictions_csv
from service.ml.preprocessing import FeatureEncoder
from service.ml.tabular import coerce_columns, infer_columns, read_csv
from tests.support.data import mixed_csv

LIMITS = {"max_rows": 10_000, "max_columns": 50, "max_cell_chars": 1_000}


def rows(body: bytes, types: dict[str, str], chunk_rows: int = 1_000, **kwargs):
    reader = CsvRows(io.BytesIO(body), types, chunk_rows=chunk_rows, **LIMITS, **kwargs)
    return reader, list(reader)


def fitted(body: bytes) -> FeatureEncoder:
    frame, infos = infer_columns(read_csv(body, max_rows=10_000, max_columns=50))
    types = {info.name: info.type for info in infos if info.name != "species"}
    return FeatureEncoder.fit(frame[list(types)], types)


def test_encoded_batches_equal_the_pandas_path_on_every_row():
    """Missing markers, leading spaces, unseen categories and booleans: the Arrow path
    gives the matrix that coercing text cells and ``FeatureEncoder.transform`` give."""
    encoder = fitted(mixed_csv(300, seed=0))
    body = mixed_csv(500, seed=3).replace(b",red,", b", red,").replace(b",blue,", b",teal,")
    _, batches = rows(body, encoder.types, chunk_rows=64)
    assert [b.num_rows for b in batches][:2] == [64, 64]
    got = np.concatenate([encode(encoder, b) for b in batches])
    text = read_csv(body, max_rows=10_000, max_columns=50).drop(columns="species")
    expected = encoder.transform(coerce_columns(text, encoder.types, field="file"))
    np.testing.assert_array_equal(got, expected)


def test_absent_feature_columns_are_missing():
    encoder = fitted(mixed_csv(300))
    _, batches = rows(b"x1\n0.5\n", encoder.types)
    expected = encoder.transform(
        coerce_columns(read_csv(b"x1\n0.5\n", max_rows=1, max_columns=5), encoder.types, field="f")
    )
    np.testing.assert_array_equal(encode(encoder, batches[0]), expected)


@pytest.mark.parametrize(
    "body, field, words",
    [
        (b"x1,flag\n1,true\n2,true\n3,maybe\n", "records[2].flag", "row 3 has 'maybe'"),
        (b"x1,flag\n1,true\ntall,true\n", "records[1].x1", "row 2 has 'tall'"),
        (b"x1,flag\n1,true\n1e999,true\n", "records[1].x1", "finite"),
        (b"x1,flag\n1,true\n2\n", "file", "row 2 (line 3) has 1 fields, fewer"),
        (b"x1,flag\n1,true,3\n", "file", "more fields"),
        (b'x1,flag\n1,"true\n', "file", "EOF inside a quoted value"),
        (b"x1,flag\n", "file", "no data rows"),
        (b"x1,flag\r\n1,true\r\n2,tr\rue\r\n", "flag", "carriage return"),
    ],
)
def test_bad_cells_name_their_row_and_column(body, field, words):
    with pytest.raises(DataError) as caught:
        rows(body, {"x1": "numeric", "flag": "boolean"})
    assert caught.value.field == field and words in str(caught.value)


def test_a_bad_cell_of_evaluate_names_its_column():
    with pytest.raises(DataError) as caught:
        rows(b"x1\n1\nabc\n", {"x1": "numeric"}, field="file")
    assert caught.value.field == "x1" and "row 2 has 'abc'" in str(caught.value)


def test_crlf_lines_and_quoted_line_breaks_are_read():
    reader, batches = rows(b'x1,c\r\n1,"a\nb"\r\n2,"c,d"\r\n', {"x1": "numeric"})
    assert reader.header == ["x1", "c"]
    assert batches[0].to_pydict() == {"x1": [1.0, 2.0], "c": ["a\nb", "c,d"]}


def test_prediction_lines_read_back_as_the_same_floats():
    probabilities = np.array([[0.1, 0.9], [1.0, 0.0], [1e-7, 1 - 1e-7]])
    classes = ("a,b", 3)
    text = predictions_csv(classes, probabilities)
    assert header_line(classes) == 'label,"p_a,b",p_3\n' and text.startswith(header_line(classes))
    read = list(csv.reader(io.StringIO(text)))
    assert [r[0] for r in read[1:]] == ["3", "a,b", "3"]
    assert (
        np.array([[float(v) for v in r[1:]] for r in read[1:]]).tolist() == probabilities.tolist()
    )
    assert prediction_lines(classes, probabilities[:0]) == b""
