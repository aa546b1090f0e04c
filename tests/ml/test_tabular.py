"""Parsing uploads and inferring column types."""

import pytest

from service.ml import DataError
from service.ml.tabular import (
    coerce_columns,
    frame_from_records,
    from_parquet,
    infer_columns,
    read_csv,
    to_parquet,
)


def parse(text: str | bytes):
    content = text.encode() if isinstance(text, str) else text
    return infer_columns(read_csv(content, max_rows=1000, max_columns=50))


def test_types_and_missing_markers_are_inferred():
    frame, columns = parse("n,c,b\n1.5,x,true\nNA,y,False\n3,,\nNaN,null,TRUE\n")
    by_name = {c.name: c for c in columns}
    assert (by_name["n"].type, by_name["n"].missing, by_name["n"].n_unique) == ("numeric", 2, 2)
    assert (by_name["c"].type, by_name["c"].missing, by_name["c"].n_unique) == (
        "categorical",
        2,
        2,
    )
    assert (by_name["b"].type, by_name["b"].missing) == ("boolean", 1)
    assert str(frame["n"].dtype) == "float64"
    assert frame["b"].tolist()[:2] == [True, False]


def test_bom_and_quoted_newlines_parse():
    frame, columns = parse('\ufeffname,text\n1,"two\nlines"\n2,plain\n'.encode())
    assert [c.name for c in columns] == ["name", "text"]
    assert frame["text"].tolist() == ["two\nlines", "plain"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"a,b\n", "no data rows"),
        (b"a,a\n1,2\n", "more than once"),
        (b"a,,c\n1,2,3\n", "empty name"),
        (b"a,b\n1,2\n3,4,5,6\n", "cannot be parsed"),
        (b"a,b\n\xff\xfe,1\n", "not UTF-8"),
        (b"a,b\n1,inf\n2,3\n", "finite"),
        (b"a,b\n1,1e400\n2,3\n", "finite"),
    ],
)
def test_bad_csv_is_a_data_error_naming_the_problem(content, message):
    with pytest.raises(DataError, match=message):
        parse(content)


def test_limits_are_enforced():
    with pytest.raises(DataError, match="rows"):
        read_csv(b"a\n1\n2\n3\n", max_rows=2, max_columns=10)
    with pytest.raises(DataError, match="columns"):
        read_csv(b"a,b,c\n1,2,3\n", max_rows=10, max_columns=2)


def test_json_records_infer_like_csv():
    records = [{"n": 1, "c": "x", "b": True}, {"n": 2.5, "b": False}, {"n": None, "c": "y"}]
    frame, columns = infer_columns(frame_from_records(records, max_rows=10, max_columns=10))
    assert [(c.name, c.type, c.missing) for c in columns] == [
        ("n", "numeric", 1),
        ("c", "categorical", 1),
        ("b", "boolean", 1),
    ]


@pytest.mark.parametrize(
    "records, field",
    [
        ("nope", "records"),
        ([], "records"),
        ([1], "records[0]"),
        ([{"a": [1]}], "records[0].a"),
        ([{"a": float("nan")}], "records[0].a"),
    ],
)
def test_bad_records_name_the_field(records, field):
    with pytest.raises(DataError) as info:
        frame_from_records(records, max_rows=10, max_columns=10)
    assert info.value.field == field


def test_parquet_round_trip_keeps_types():
    frame, _ = parse("n,c,b\n1,x,true\n,y,false\n")
    again = from_parquet(to_parquet(frame))
    assert again.dtypes.astype(str).tolist() == frame.dtypes.astype(str).tolist()
    assert again["n"].isna().tolist() == [False, True]


def test_coerce_names_the_row_and_column_of_a_wrong_type():
    raw = frame_from_records([{"n": 1}, {"n": "abc"}], max_rows=10, max_columns=10)
    with pytest.raises(DataError) as info:
        coerce_columns(raw, {"n": "numeric"}, field="records")
    assert info.value.field == "records[1].n"
